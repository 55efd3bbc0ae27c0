//! TwiML documents we answer Twilio with. Built from a tiny element tree so that every dynamic
//! value (greetings, URLs, numbers) is XML-escaped in exactly one place.

/// One TwiML element with attributes and children (elements or text).
pub struct Element {
    name: &'static str,
    attributes: Vec<(&'static str, String)>,
    children: Vec<Node>,
}

enum Node {
    Element(Element),
    Text(String),
}

impl Element {
    pub fn new(name: &'static str) -> Self {
        Self { name, attributes: Vec::new(), children: Vec::new() }
    }

    pub fn attr(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.attributes.push((name, value.into()));
        self
    }

    pub fn child(mut self, child: Element) -> Self {
        self.children.push(Node::Element(child));
        self
    }

    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.children.push(Node::Text(text.into()));
        self
    }

    fn write(&self, out: &mut String) {
        out.push('<');
        out.push_str(self.name);
        for (name, value) in &self.attributes {
            out.push(' ');
            out.push_str(name);
            out.push_str("=\"");
            escape_into(value, out);
            out.push('"');
        }
        if self.children.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        for child in &self.children {
            match child {
                Node::Element(element) => element.write(out),
                Node::Text(text) => escape_into(text, out),
            }
        }
        out.push_str("</");
        out.push_str(self.name);
        out.push('>');
    }
}

fn escape_into(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters other than tab/newline are not allowed in XML 1.0.
            c if c.is_control() && c != '\t' && c != '\n' && c != '\r' => {}
            c => out.push(c),
        }
    }
}

/// A complete document: `<Response>` with the given verbs.
pub fn response(verbs: impl IntoIterator<Item = Element>) -> String {
    let mut root = Element::new("Response");
    for verb in verbs {
        root = root.child(verb);
    }
    let mut out = String::from(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    root.write(&mut out);
    out
}

/// What a ConversationRelay session needs to know.
pub struct RelaySession<'a> {
    /// The `wss://` URL of our relay WebSocket for this call.
    pub url: &'a str,
    /// Where Twilio reports the end of the session.
    pub action: &'a str,
    pub welcome_greeting: Option<&'a str>,
    /// The main locale, e.g. `en-US`.
    pub language: &'a str,
    /// Further locales the caller may be served in (expand languages).
    pub other_languages: &'a [String],
    pub parameters: &'a [(&'a str, String)],
    /// Record the call (Twilio records; the status callback tells when the audio is ready).
    pub recording: Option<CarrierRecording<'a>>,
}

/// A call Twilio records: both sides, one channel each, with a consent announcement first.
pub struct CarrierRecording<'a> {
    /// Where Twilio reports the recording's progress.
    pub callback: &'a str,
    /// Said (in the session's main language) before the agent's greeting.
    pub announcement: &'a str,
}

/// `<Connect action><ConversationRelay …>`: Twilio does speech, we get text. A recorded call
/// starts its recording (`<Start><Recording>`) and says the announcement first.
pub fn connect_conversation_relay(session: &RelaySession<'_>) -> String {
    let mut relay = Element::new("ConversationRelay")
        .attr("url", session.url)
        .attr("language", session.language)
        .attr("interruptible", "any")
        .attr("dtmfDetection", "true");
    if let Some(greeting) = session.welcome_greeting.filter(|g| !g.trim().is_empty()) {
        relay = relay.attr("welcomeGreeting", greeting);
    }
    for code in session.other_languages {
        relay = relay.child(Element::new("Language").attr("code", code.as_str()));
    }
    for (name, value) in session.parameters {
        relay = relay.child(Element::new("Parameter").attr("name", *name).attr("value", value.as_str()));
    }
    let connect = Element::new("Connect").attr("action", session.action).child(relay);
    match &session.recording {
        Some(recording) => response([
            Element::new("Start").child(
                Element::new("Recording")
                    .attr("channels", "dual")
                    .attr("track", "both")
                    .attr("trim", "do-not-trim")
                    .attr("recordingStatusCallback", recording.callback)
                    .attr("recordingStatusCallbackMethod", "POST")
                    .attr("recordingStatusCallbackEvent", "in-progress completed absent"),
            ),
            Element::new("Say").attr("language", session.language).text(recording.announcement),
            connect,
        ]),
        None => response([connect]),
    }
}

/// `<Connect action><Stream url>`: raw audio both ways; data travels as `<Parameter>`s because
/// Stream URLs cannot carry a query string.
pub fn connect_stream(url: &str, action: &str, parameters: &[(&str, String)]) -> String {
    let mut stream = Element::new("Stream").attr("url", url);
    for (name, value) in parameters {
        stream = stream.child(Element::new("Parameter").attr("name", *name).attr("value", value.as_str()));
    }
    response([Element::new("Connect").attr("action", action).child(stream)])
}

/// Says `text` politely, then hangs up.
pub fn say_and_hang_up(text: &str) -> String {
    response([Element::new("Say").text(text), Element::new("Hangup")])
}

/// Connects the caller to `number`.
pub fn dial(number: &str) -> String {
    response([Element::new("Dial").text(number)])
}

/// Ends the call.
pub fn hang_up() -> String {
    response([Element::new("Hangup")])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_document_escapes_every_value() {
        let others = vec!["fr-FR".to_owned(), "es-ES".to_owned()];
        let params = [("call_id", "01a2-<&>".to_owned())];
        let doc = connect_conversation_relay(&RelaySession {
            url: "wss://sb.example.com/twilio/relay/abc",
            action: "https://sb.example.com/twilio/connect-action",
            welcome_greeting: Some(r#"Hi <there> & "welcome" to Bob's"#),
            language: "en-US",
            other_languages: &others,
            parameters: &params,
            recording: None,
        });
        assert_eq!(
            doc,
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect action="https://sb.example.com/twilio/connect-action">"#,
                r#"<ConversationRelay url="wss://sb.example.com/twilio/relay/abc" language="en-US" interruptible="any" dtmfDetection="true" "#,
                r#"welcomeGreeting="Hi &lt;there&gt; &amp; &quot;welcome&quot; to Bob&apos;s">"#,
                r#"<Language code="fr-FR"/><Language code="es-ES"/><Parameter name="call_id" value="01a2-&lt;&amp;&gt;"/>"#,
                r#"</ConversationRelay></Connect></Response>"#
            )
        );
    }

    #[test]
    fn stream_and_hang_up_documents() {
        let doc = connect_stream("wss://h/twilio/media/1", "https://h/twilio/connect-action", &[("call_id", "1".into())]);
        assert_eq!(
            doc,
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect action="https://h/twilio/connect-action"><Stream url="wss://h/twilio/media/1"><Parameter name="call_id" value="1"/></Stream></Connect></Response>"#
        );
        assert_eq!(
            say_and_hang_up("Sorry & bye\u{7}"),
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Say>Sorry &amp; bye</Say><Hangup/></Response>"#
        );
        assert_eq!(hang_up(), r#"<?xml version="1.0" encoding="UTF-8"?><Response><Hangup/></Response>"#);
    }

    #[test]
    fn blank_greeting_is_left_out() {
        let doc = connect_conversation_relay(&RelaySession {
            url: "wss://h/r",
            action: "https://h/a",
            welcome_greeting: Some("  "),
            language: "en-US",
            other_languages: &[],
            parameters: &[],
            recording: None,
        });
        assert!(!doc.contains("welcomeGreeting"));
    }

    #[test]
    fn a_recorded_call_starts_recording_and_says_the_announcement_before_connecting() {
        let doc = connect_conversation_relay(&RelaySession {
            url: "wss://h/r",
            action: "https://h/a",
            welcome_greeting: Some("Hi!"),
            language: "en-US",
            other_languages: &[],
            parameters: &[],
            recording: Some(CarrierRecording { callback: "https://h/twilio/recording", announcement: "This call is recorded." }),
        });
        assert_eq!(
            doc,
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?><Response><Start><Recording channels="dual" track="both" trim="do-not-trim" "#,
                r#"recordingStatusCallback="https://h/twilio/recording" recordingStatusCallbackMethod="POST" "#,
                r#"recordingStatusCallbackEvent="in-progress completed absent"/></Start>"#,
                r#"<Say language="en-US">This call is recorded.</Say><Connect action="https://h/a">"#,
                r#"<ConversationRelay url="wss://h/r" language="en-US" interruptible="any" dtmfDetection="true" welcomeGreeting="Hi!"/>"#,
                r#"</Connect></Response>"#
            )
        );
    }
}
