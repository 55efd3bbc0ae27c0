//! The web console: sign-in (lockout, sessions, password change and reset), CSRF and role checks
//! on every form, over HTTP on both backends; and the pages as a person uses them, in real
//! Chromium (SQLite).

use std::process::{Command, Stdio};

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use switchboard::domain::audit::Actor;
use switchboard::domain::org::{Email, Role};
use switchboard::storage::users;

use serde_json::json;

use crate::support::browser::Browser;
use crate::support::fake_llm::{FakeLlm, Reply};
use crate::support::fake_speech::{self, FakeSpeech};
use crate::support::relay_client::RelayClient;
use crate::support::{Backend, LINE_TOKEN, TestApp, on_both_backends, sid, spawn_app};

pub const PASSWORD: &str = "correct horse battery staple";

/// A browser as reqwest plays it: its cookies, and the CSRF token of the last page it read.
struct Visitor {
    http: reqwest::Client,
    base: String,
    cookies: Vec<(String, String)>,
    csrf: String,
}

impl Visitor {
    fn new(app: &TestApp) -> Visitor {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Visitor { http, base: app.url(""), cookies: Vec::new(), csrf: String::new() }
    }

    fn remember(&mut self, response: &reqwest::Response) {
        for set in response.headers().get_all(SET_COOKIE) {
            let pair = set.to_str().unwrap().split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != name);
            if !value.is_empty() {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("; ")
    }

    /// GETs a page; returns its status, `Location` and body, and keeps its CSRF token.
    async fn get(&mut self, path: &str) -> (StatusCode, String, String) {
        let response = self.http.get(format!("{}{path}", self.base)).header(COOKIE, self.cookie_header()).send().await.unwrap();
        self.remember(&response);
        let (status, location) = (response.status(), location(&response));
        let body = response.text().await.unwrap();
        if let Some(token) = body.split("name=\"_csrf\" value=\"").nth(1).and_then(|rest| rest.split('"').next()) {
            self.csrf = token.to_owned();
        }
        (status, location, body)
    }

    /// POSTs a form with the given fields (add `_csrf` yourself, or not), from `origin` if given.
    async fn post(&mut self, path: &str, fields: &[(&str, &str)], origin: Option<&str>) -> (StatusCode, String, String) {
        let mut request = self.http.post(format!("{}{path}", self.base)).header(COOKIE, self.cookie_header()).form(fields);
        if let Some(origin) = origin {
            request = request.header("Origin", origin);
        }
        let response = request.send().await.unwrap();
        self.remember(&response);
        let (status, location) = (response.status(), location(&response));
        (status, location, response.text().await.unwrap())
    }

    /// Posts a form with this visitor's CSRF token.
    async fn submit(&mut self, path: &str, fields: &[(&str, &str)]) -> (StatusCode, String, String) {
        let csrf = self.csrf.clone();
        let mut all = vec![("_csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post(path, &all, None).await
    }

    async fn sign_in(&mut self, email: &str, password: &str) -> (StatusCode, String, String) {
        self.get("/sign-in?next=/apps").await;
        self.submit("/sign-in", &[("email", email), ("password", password), ("next", "/apps")]).await
    }
}

fn location(response: &reqwest::Response) -> String {
    response.headers().get(LOCATION).map(|l| l.to_str().unwrap().to_owned()).unwrap_or_default()
}

pub async fn add_user(app: &TestApp, email: &str, role: Role) {
    users::create(&app.db, app.org, &Email::parse(email).unwrap(), &users::hash_password(PASSWORD), role, Actor::System).await.unwrap();
}

async fn app_names(app: &TestApp) -> Vec<String> {
    app.get("/api/v1/apps").await.expect(200)["data"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap().to_owned()).collect()
}

async fn pages_need_sign_in_and_carry_security_headers(app: TestApp) {
    let mut visitor = Visitor::new(&app);
    let (status, to, _) = visitor.get("/apps?cursor=x").await;
    assert_eq!((status, to.as_str()), (StatusCode::SEE_OTHER, "/sign-in?next=%2Fapps%3Fcursor%3Dx"));
    let response = reqwest::get(app.url("/sign-in")).await.unwrap();
    let csp = response.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert_eq!(response.headers()["referrer-policy"], "same-origin");
    // After signing in, the browser is sent where it was going (only ever to a local path).
    add_user(&app, "ann@example.com", Role::Admin).await;
    visitor.get("/sign-in").await;
    let (status, to, _) =
        visitor.submit("/sign-in", &[("email", "ann@example.com"), ("password", PASSWORD), ("next", "//evil.example/")]).await;
    assert_eq!((status, to.as_str()), (StatusCode::SEE_OTHER, "/"));
    let session = visitor.cookies.iter().find(|(n, _)| n == "switchboard_session").expect("a session cookie");
    assert_eq!(session.1.len(), 43, "32 random bytes");
    let (status, _, body) = visitor.get("/apps").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("No apps yet"), "{body}");
    // Assets are served under their content hash, cached for good.
    let css = body.split("href=\"/assets/").nth(1).unwrap().split('"').next().unwrap();
    let asset = reqwest::get(app.url(&format!("/assets/{css}"))).await.unwrap();
    assert_eq!(asset.status(), 200);
    assert!(asset.headers()["cache-control"].to_str().unwrap().contains("immutable"));
    assert_eq!(reqwest::get(app.url("/assets/console.0000000000.css")).await.unwrap().status(), 404);
}

async fn wrong_passwords_lock_the_account_until_a_reset(app: TestApp) {
    add_user(&app, "bob@example.com", Role::Admin).await;
    let mut visitor = Visitor::new(&app);
    for attempt in 1..5 {
        let (status, _, body) = visitor.sign_in("bob@example.com", "not the password").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
        assert!(body.contains("Wrong e-mail address or password."), "{body}");
    }
    // An address nobody has gets the same answer.
    let (status, _, body) = visitor.sign_in("nobody@example.com", "whatever it is").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("Wrong e-mail address or password."));
    let (status, _, body) = visitor.sign_in("bob@example.com", "still not it").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(body.contains("This account is locked after 5 failed sign-ins"), "{body}");
    // While locked, even the right password is refused.
    let (status, _, _) = visitor.sign_in("bob@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // An operator resets the password; the lock goes with it.
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--data-dir", app.data_dir.path().to_str().unwrap(), "--database-url", &app.database_url])
        .args(["admin", "reset-password", "--email", "Bob@Example.com"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let new_password = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert!(new_password.len() >= 20);
    let (status, _, _) = visitor.sign_in("bob@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the old password is gone");
    let (status, to, _) = visitor.sign_in("bob@example.com", &new_password).await;
    assert_eq!((status, to.as_str()), (StatusCode::SEE_OTHER, "/apps"));
    let audit = app.get("/api/v1/audit-log").await.expect(200);
    let actions: Vec<&str> = audit["data"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    for action in ["user.locked_out", "user.password_changed", "user.signed_in"] {
        assert!(actions.contains(&action), "{action} missing from {actions:?}");
    }
}

async fn forms_without_their_token_or_from_elsewhere_change_nothing(app: TestApp) {
    add_user(&app, "cat@example.com", Role::Admin).await;
    let mut visitor = Visitor::new(&app);
    visitor.sign_in("cat@example.com", PASSWORD).await;
    visitor.get("/apps").await;
    let csrf = visitor.csrf.clone();
    let (status, _, body) = visitor.post("/apps", &[("name", "Forged")], None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("Reload the page and try again"), "{body}");
    let (status, _, _) = visitor.post("/apps", &[("_csrf", "not-the-token"), ("name", "Forged")], None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = visitor.post("/apps", &[("_csrf", &csrf), ("name", "Forged")], Some("http://evil.example")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Another session's token does not fit this session.
    let mut other = Visitor::new(&app);
    other.sign_in("cat@example.com", PASSWORD).await;
    other.get("/apps").await;
    let (status, _, _) = visitor.post("/apps", &[("_csrf", &other.csrf), ("name", "Forged")], None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(app_names(&app).await.is_empty(), "nothing was created");
    // The genuine form works; its validation error is shown beside the field.
    let (status, _, body) = visitor.submit("/apps", &[("name", "   ")]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains(r#"<p class="field-error" id="name-error">Name must not be empty</p>"#), "{body}");
    let (status, to, _) = visitor.submit("/apps", &[("name", "Support line"), ("description", "")]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(to.starts_with("/apps/") && to.ends_with("/numbers"), "{to}");
    assert_eq!(app_names(&app).await, ["Support line"]);
    let (_, _, page) = visitor.get(&to).await;
    assert!(page.contains("App created."), "the notice shows once");
    let (_, _, page) = visitor.get(&to).await;
    assert!(!page.contains("App created."));
}

async fn members_read_everything_and_change_only_their_own_account(app: TestApp) {
    app.create_app("Front desk").await;
    add_user(&app, "dan@example.com", Role::Member).await;
    let mut visitor = Visitor::new(&app);
    visitor.sign_in("dan@example.com", PASSWORD).await;
    let (status, _, body) = visitor.get("/apps").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Front desk") && body.contains("read-only access"), "{body}");
    assert!(!body.contains("action=\"/apps\""), "no New app form for members");
    let (status, _, body) = visitor.submit("/apps", &[("name", "Sneaky")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("can look at everything but change nothing"), "{body}");
    let (status, _, _) =
        visitor.submit("/settings/phone-providers", &[("name", "X"), ("account_sid", &sid("AC", '1')), ("auth_token", "t")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(app_names(&app).await, ["Front desk"]);
    // Their own password is theirs to change.
    visitor.get("/settings/password").await;
    let (status, _, body) = visitor
        .submit("/settings/password", &[("current_password", PASSWORD), ("new_password", "short"), ("confirm_password", "short")])
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("The new password must be at least 12 characters long"), "{body}");
    let (status, _, body) = visitor
        .submit(
            "/settings/password",
            &[("current_password", "wrong one"), ("new_password", "a new long password"), ("confirm_password", "a new long password")],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("This is not your current password"), "{body}");
    let (status, to, _) = visitor
        .submit(
            "/settings/password",
            &[("current_password", PASSWORD), ("new_password", "a new long password"), ("confirm_password", "a new long password")],
        )
        .await;
    assert_eq!((status, to.as_str()), (StatusCode::SEE_OTHER, "/settings/password"));
    let mut again = Visitor::new(&app);
    assert_eq!(again.sign_in("dan@example.com", "a new long password").await.0, StatusCode::SEE_OTHER);
}

async fn sessions_are_listed_and_end_when_revoked_or_the_password_changes(app: TestApp) {
    add_user(&app, "eve@example.com", Role::Owner).await;
    let (mut laptop, mut phone) = (Visitor::new(&app), Visitor::new(&app));
    laptop.sign_in("eve@example.com", PASSWORD).await;
    phone.sign_in("eve@example.com", PASSWORD).await;
    let (_, _, page) = laptop.get("/settings/sessions").await;
    assert_eq!(page.matches("/end\"").count(), 1, "one other session can be ended: {page}");
    assert!(page.contains("This browser"));
    let other = page.split("action=\"/settings/sessions/").nth(1).unwrap().split('/').next().unwrap().to_owned();
    let (status, _, _) = laptop.submit(&format!("/settings/sessions/{other}/end"), &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, to, _) = phone.get("/apps").await;
    assert_eq!((status, to.as_str()), (StatusCode::SEE_OTHER, "/sign-in?next=%2Fapps"), "the ended session is signed out");
    // Someone else's session cannot be ended by another user.
    phone.sign_in("eve@example.com", PASSWORD).await;
    let (_, _, page) = laptop.get("/settings/sessions").await;
    let phone_session = page.split("action=\"/settings/sessions/").nth(1).unwrap().split('/').next().unwrap().to_owned();
    add_user(&app, "fay@example.com", Role::Admin).await;
    let mut stranger = Visitor::new(&app);
    stranger.sign_in("fay@example.com", PASSWORD).await;
    stranger.get("/settings/sessions").await;
    let (status, _, _) = stranger.submit(&format!("/settings/sessions/{phone_session}/end"), &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(phone.get("/apps").await.0, StatusCode::OK, "still signed in");
    // A password change signs out every other session, not this one.
    laptop.get("/settings/password").await;
    let new = "another long password";
    laptop.submit("/settings/password", &[("current_password", PASSWORD), ("new_password", new), ("confirm_password", new)]).await;
    assert_eq!(phone.get("/apps").await.0, StatusCode::SEE_OTHER);
    assert_eq!(laptop.get("/apps").await.0, StatusCode::OK);
    // Signing out ends this one.
    let (status, to, _) = laptop.submit("/sign-out", &[]).await;
    assert_eq!((status, to.as_str()), (StatusCode::SEE_OTHER, "/sign-in"));
    assert_eq!(laptop.get("/apps").await.0, StatusCode::SEE_OTHER);
}

on_both_backends!(
    pages_need_sign_in_and_carry_security_headers,
    wrong_passwords_lock_the_account_until_a_reset,
    forms_without_their_token_or_from_elsewhere_change_nothing,
    members_read_everything_and_change_only_their_own_account,
    sessions_are_listed_and_end_when_revoked_or_the_password_changes,
);

/// The first-start owner signs in (after one wrong try), connects a Twilio account whose token is
/// wrong and one that works, and creates an app, in Chromium.
#[tokio::test]
async fn in_chromium_an_owner_signs_in_connects_twilio_and_creates_an_app() {
    let app = spawn_app(Backend::Sqlite).await;
    let password = std::fs::read_to_string(app.data_dir.path().join("admin-password")).unwrap();
    let (good_sid, bad_sid) = (sid("AC", 'a'), sid("AC", 'b'));
    app.twilio.add_account(&good_sid, "good-token");
    app.twilio.add_account(&bad_sid, "the-real-token");
    let browser = Browser::open(app.url("")).await;

    browser.go("/apps").await;
    assert_eq!(browser.path().await, "/sign-in?next=%2Fapps");
    browser.screenshot("sign-in").await;
    browser.sign_in("admin@switchboard.local", "wrong password").await;
    assert_eq!(browser.text("#sign-in-error").await, "Wrong e-mail address or password.");
    browser.sign_in("admin@switchboard.local", password.trim()).await;
    assert_eq!(browser.path().await, "/apps");
    assert!(browser.text("main").await.contains("No apps yet"));
    browser.screenshot("apps-empty").await;

    browser.click("a[href='/settings']").await;
    assert_eq!(browser.path().await, "/settings/phone-providers");
    assert!(browser.text("main").await.contains("No phone provider yet"));
    for (name, account, token) in [("Old account", &bad_sid, "a-wrong-token"), ("Main account", &good_sid, "good-token")] {
        browser.fill("#name", name).await;
        browser.fill("#account_sid", account).await;
        browser.fill("#auth_token", token).await;
        browser.click("form[action='/settings/phone-providers'] button[type=submit]").await;
        assert_eq!(browser.path().await, "/settings/phone-providers");
    }
    assert!(browser.text(".notice").await.contains("“Main account” is connected and Active."));
    assert_eq!(browser.text("tr[data-provider='Main account'] .badge").await, "Active");
    assert_eq!(browser.text("tr[data-provider='Old account'] .badge").await, "Invalid credentials");
    browser.screenshot("phone-providers").await;

    // A malformed SID is explained beside its field, and what was typed stays.
    browser.fill("#name", "Typo").await;
    browser.fill("#account_sid", "AC123").await;
    browser.fill("#auth_token", "x").await;
    browser.click("form[action='/settings/phone-providers'] button[type=submit]").await;
    assert!(browser.text("#account_sid-error").await.contains("must be `AC` followed by 32 hexadecimal digits"));
    assert_eq!(browser.find("#name").await.prop("value").await.unwrap().as_deref(), Some("Typo"));

    browser.go("/apps").await;
    browser.fill("#name", "Support line").await;
    browser.click("form[action='/apps'] button[type=submit]").await;
    assert!(browser.path().await.ends_with("/numbers"));
    assert_eq!(browser.text("h1").await, "Support line");
    assert!(browser.has(".empty").await);
    browser.screenshot("app-numbers-empty").await;
    browser.close().await;
}

/// An admin builds a phone agent in Chromium — settings, a version restored, a number bought by
/// area code with a language — then a caller talks to it and the record's Voice conversation
/// shows the call; finally the number is deleted (and stays in the Twilio account).
#[tokio::test]
async fn in_chromium_an_agent_gets_a_number_takes_a_call_and_shows_the_conversation() {
    let app = spawn_app(Backend::Sqlite).await;
    add_user(&app, "admin@acme.example", Role::Admin).await;
    let llm = FakeLlm::start().await;
    let model = json!({ "name": "Local model", "base_url": llm.base_url, "default_model": "fake-model", "api_key": "sk-test" });
    app.post("/api/v1/llm-providers", model).await.expect(201);
    let account = sid("AC", '1');
    app.twilio.add_account(&account, LINE_TOKEN);
    app.post("/api/v1/phone-providers", json!({ "name": "Main", "account_sid": account, "auth_token": LINE_TOKEN })).await.expect(201);
    app.twilio.offer("415", &["+14155550111", "+14155550112"]);
    let app_id = app.create_app("Support").await;
    let browser = Browser::open(app.url("")).await;
    browser.sign_in("admin@acme.example", PASSWORD).await;

    // The agent: created, configured, changed, and restored to the configured version.
    browser.go(&format!("/apps/{app_id}/agents")).await;
    assert!(browser.text("main").await.contains("No agents yet"));
    browser.fill("#name", "Ava").await;
    browser.click("form[action$='/agents'] button[type=submit]").await;
    assert!(browser.text(".notice").await.contains("Agent created"));
    browser.fill("#instructions", "You help Acme customers with billing.").await;
    browser.fill("#first_message", "Hi, this is Ava from Acme.").await;
    browser.fill("#end_call_phrases", "Goodbye\nBye now").await;
    browser.press("#llm_provider_id option:nth-child(2)").await;
    browser.click("#agent-form button[type=submit]").await;
    assert_eq!(browser.text(".notice").await, "Saved as version 2.");
    browser.fill("#first_message", "Hello from the wrong greeting.").await;
    browser.fill("#conversation_timeout_secs", "abc").await;
    browser.click("#agent-form button[type=submit]").await;
    assert_eq!(browser.text("#conversation_timeout_secs-error").await, "Conversation timeout (seconds): must be a whole number of seconds");
    browser.fill("#first_message", "Hello from the wrong greeting.").await;
    browser.fill("#conversation_timeout_secs", "30").await;
    browser.click("#agent-form button[type=submit]").await;
    assert_eq!(browser.text(".notice").await, "Saved as version 3.");
    browser.press("#version-3 summary").await;
    assert!(browser.text("#version-3 .diff").await.contains("Hello from the wrong greeting."));
    browser.click("#version-2 form button").await;
    assert_eq!(browser.text(".notice").await, "Version 2 restored as version 4.");
    assert_eq!(browser.find("#first_message").await.prop("value").await.unwrap().as_deref(), Some("Hi, this is Ava from Acme."));
    assert!(browser.text("#preview-heading").await.contains("Prompt preview"));
    browser.screenshot("agent").await;
    browser.screenshot_at("agent-voice", "#speech_to_text_provider_id").await;

    // The number: bought by area code, answered by Ava, with French.
    browser.go(&format!("/apps/{app_id}/numbers")).await;
    browser.click("a[href$='/numbers/new']").await;
    browser.fill("#area_code", "415").await;
    browser.click("#number-search button[type=submit]").await;
    browser.press("input[value='buy:+14155550112']").await;
    browser.press("input[name=expand_languages]").await;
    browser.press("input[name=languages][value=fr]").await;
    browser.screenshot("add-number").await;
    browser.click("form[action$='/numbers'] button.primary").await;
    assert_eq!(browser.text(".notice").await, "+14155550112 is ready: calls to it now reach the agent.");
    assert!(browser.text("tr[data-number='+14155550112']").await.contains("English + 1 more"));
    assert!(app.twilio.number("+14155550112").expect("bought at Twilio").voice.contains_key("voice_url"));
    browser.screenshot("numbers").await;

    // A caller talks to Ava.
    llm.script([
        Reply::says("Sure, what is your account number?"),
        Reply::calls("endConversation", json!({ "summary": "Billing question for account 42.", "next_steps": "Send the invoice.", "closing_message": "Thanks for calling, goodbye!" })),
    ]);
    let call_sid = sid("CA", 'c');
    let ring = [
        ("AccountSid", account.as_str()),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", call_sid.as_str()),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
        ("From", "+14155550123"),
        ("To", "+14155550112"),
    ];
    assert_eq!(app.twilio_post("/twilio/voice", &ring, Some(LINE_TOKEN)).await.status, 200);
    let call_id = app.get("/api/v1/calls").await.expect(200)["data"][0]["id"].as_str().unwrap().to_owned();
    browser.go(&format!("/apps/{app_id}/calls")).await;
    assert!(browser.text("#calls").await.contains("+14155550123"), "the record exists as soon as the phone rings");
    let mut relay = RelayClient::connect(app.addr, &call_id, Some(LINE_TOKEN)).await.unwrap();
    relay.setup(&call_sid).await;
    relay.say("I have a question about my bill.").await;
    assert_eq!(relay.utterance().await.text, "Sure, what is your account number?");
    relay.say("Account 42, thanks.").await;
    relay.utterance().await;
    assert_eq!(relay.next().await.unwrap()["type"], "end");
    relay.close().await;
    let finished = app
        .twilio_post(
            "/twilio/status",
            &[("AccountSid", account.as_str()), ("CallSid", &call_sid), ("CallStatus", "completed"), ("CallDuration", "42")],
            Some(LINE_TOKEN),
        )
        .await;
    assert!(finished.status.is_success(), "{}", finished.text);
    browser.click(&format!("a[href='/calls/{call_id}']")).await;
    let conversation = browser.text("#conversation").await;
    for said in [
        "Hi, this is Ava from Acme.",
        "I have a question about my bill.",
        "Sure, what is your account number?",
        "Thanks for calling, goodbye!",
    ] {
        assert!(conversation.contains(said), "{said} missing from {conversation}");
    }
    browser.press("details.tool summary").await;
    assert!(browser.text("details.tool").await.contains("Billing question for account 42."));
    assert!(browser.text(".facts").await.contains("agent_ended"));
    browser.screenshot("call-record").await;

    // Deleting the number keeps it in the Twilio account.
    browser.go(&format!("/apps/{app_id}/numbers")).await;
    browser.click("tr[data-number='+14155550112'] a.danger").await;
    assert!(browser.text("main").await.contains("It stays in your Twilio account"));
    browser.click("button.danger").await;
    // A bought number had no settings of its own to restore, and clearing ours needs empty values
    // that Twilio's description refuses: the service is removed, and the page says what stayed.
    let notice = browser.text(".notice").await;
    assert!(notice.starts_with("The phone service is removed, but Twilio kept voice_url"), "{notice}");
    assert!(notice.contains("until you change them in the Twilio console"), "{notice}");
    assert!(app.twilio.number("+14155550112").is_some(), "still in the Twilio account");
    assert!(browser.text("main").await.contains("No phone numbers yet"));
    browser.close().await;
}

async fn settings_manage_people_tokens_models_and_retention(app: TestApp) {
    add_user(&app, "olga@example.com", Role::Owner).await;
    let mut owner = Visitor::new(&app);
    owner.sign_in("olga@example.com", PASSWORD).await;

    // People: a new person gets a one-time password that works; roles change; the last owner stays.
    owner.get("/settings/users").await;
    let (status, _, page) = owner.submit("/settings/users", &[("email", "Pat@Example.com"), ("role", "member")]).await;
    assert_eq!(status, StatusCode::OK);
    let password = page.split("<code id=\"initial-password\">").nth(1).unwrap().split('<').next().unwrap().to_owned();
    let mut pat = Visitor::new(&app);
    assert_eq!(pat.sign_in("pat@example.com", &password).await.0, StatusCode::SEE_OTHER);
    let members = app.get("/api/v1/users").await.expect(200);
    let pat_id =
        members["data"].as_array().unwrap().iter().find(|u| u["email"] == "pat@example.com").unwrap()["id"].as_str().unwrap().to_owned();
    let (status, _, _) = owner.submit(&format!("/settings/users/{pat_id}/role"), &[("role", "admin")]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, _, page) = pat.get("/apps").await;
    assert!(!page.contains("read-only access"), "the new role applies at once");
    // Admin tokens cannot hand out the owner role; the first owner can, and the last owner stays.
    let problem = app.post("/api/v1/users", json!({ "email": "eve@example.com", "role": "owner" })).await.problem(403);
    assert!(problem.contains("only an owner"), "{problem}");
    let olga =
        members["data"].as_array().unwrap().iter().find(|u| u["email"] == "olga@example.com").unwrap()["id"].as_str().unwrap().to_owned();
    let admin_owner = members["data"].as_array().unwrap().iter().find(|u| u["email"] == "admin@switchboard.local").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    owner.get("/settings/users").await;
    owner.submit(&format!("/settings/users/{admin_owner}/remove"), &[]).await;
    let (status, _, page) = owner.submit(&format!("/settings/users/{olga}/role"), &[("role", "member")]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("The organisation needs at least one owner"), "{page}");
    let (status, _, _) = owner.submit(&format!("/settings/users/{pat_id}/remove"), &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(pat.get("/apps").await.0, StatusCode::SEE_OTHER, "a removed member is signed out");

    // API tokens: shown once, working, then revoked.
    owner.get("/settings/api-tokens").await;
    let (status, _, page) = owner.submit("/settings/api-tokens", &[("name", "CRM sync"), ("role", "member")]).await;
    assert_eq!(status, StatusCode::OK);
    let token = page.split("<code id=\"new-token\">").nth(1).unwrap().split('<').next().unwrap().to_owned();
    assert_eq!(app.send(reqwest::Method::GET, "/api/v1/apps", Some(&token), None).await.status, 200);
    assert_eq!(app.send(reqwest::Method::POST, "/api/v1/apps", Some(&token), Some(&json!({ "name": "x" }))).await.status, 403);
    let (_, _, page) = owner.get("/settings/api-tokens").await;
    assert!(!page.contains(&token), "never shown again");
    let revoke = page.split("action=\"/settings/api-tokens/").nth(1).unwrap().split('"').next().unwrap().to_owned();
    owner.submit(&format!("/settings/api-tokens/{revoke}"), &[]).await;
    assert_eq!(app.send(reqwest::Method::GET, "/api/v1/apps", Some(&token), None).await.status, 401);

    // LLM providers: the connection test asks the model and says what happened.
    let llm = FakeLlm::start().await;
    llm.script([Reply::says("OK")]);
    owner.get("/settings/llm-providers").await;
    let (status, _, page) =
        owner.submit("/settings/llm-providers", &[("name", "Local"), ("base_url", "not a url"), ("default_model", "m")]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("id=\"base_url-error\""), "{page}");
    assert!(page.contains("value=\"Local\""), "what was typed stays");
    owner.submit("/settings/llm-providers", &[("name", "Local"), ("base_url", &llm.base_url), ("default_model", "fake-model")]).await;
    let (_, _, page) = owner.get("/settings/llm-providers").await;
    let test = page.split("action=\"/settings/llm-providers/").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let (_, _, page) = owner.submit(&format!("/settings/llm-providers/{test}"), &[]).await;
    assert!(page.contains("Answered in") && page.contains("“OK”"), "{page}");
    assert_eq!(llm.requests()[0]["model"], "fake-model");
    llm.script([Reply::fails(401)]);
    let (_, _, page) = owner.submit(&format!("/settings/llm-providers/{test}"), &[]).await;
    assert!(page.contains("No answer from fake-model") && page.contains("401"), "{page}");

    // Speech providers: tested with the vendor when added; a refusal shows beside its field.
    let speech = FakeSpeech::start().await;
    let (_, _, page) = owner.get("/settings/speech-providers").await;
    // The server's own engines are not installed here (and never installed by a test).
    assert!(page.contains("Built-in speech") && page.contains("Not installed.") && page.contains("switchboard models install"), "{page}");
    let fields = |key: &'static str| {
        [("name", "Voices"), ("kind", "openai"), ("base_url", speech.base_url.as_str()), ("transcription_model", "whisper-1")]
            .into_iter()
            .chain([("speech_model", "tts-1"), ("default_voice", "alloy"), ("api_key", key)])
            .collect::<Vec<_>>()
    };
    let (status, _, page) = owner.submit("/settings/speech-providers", &fields("sk-wrong")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("id=\"api_key-error\"") && page.contains("Incorrect API key"), "{page}");
    assert!(page.contains("value=\"Voices\"") && !page.contains("sk-wrong"), "what was typed stays, but not the key");
    let (status, _, _) = owner.submit("/settings/speech-providers", &fields(fake_speech::API_KEY)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, _, page) = owner.get("/settings/speech-providers").await;
    assert!(page.contains("data-provider=\"Voices\"") && page.contains("whisper-1") && page.contains("tts-1 · alloy"), "{page}");
    // An agent's voice settings: providers, voices per language, turn-taking, filler.
    let voices = app.get("/api/v1/speech-providers").await.expect(200)["data"][0]["id"].as_str().unwrap().to_owned();
    let app_id = app.create_app("Voices").await;
    let agent = app.create_agent(&app_id, "Ava").await;
    let (_, _, page) = owner.get(&format!("/agents/{agent}")).await;
    assert!(page.contains("turn-taking models are not installed"), "the page says which setting ends turns here");
    let form = |voices_text: &'static str, voices: &str| {
        [("name", "Ava"), ("instructions", "Help callers."), ("conversation_timeout_secs", "30"), ("max_call_duration_secs", "1800")]
            .into_iter()
            .map(|(k, v)| (k, v.to_owned()))
            .chain([
                ("speech_to_text_provider_id", voices.to_owned()),
                ("text_to_speech_provider_id", voices.to_owned()),
                ("voices", voices_text.to_owned()),
                ("end_of_turn_silence_ms", "1200".to_owned()),
                ("patience_ms", "3500".to_owned()),
                ("backchannels_interrupt", "on".to_owned()),
                ("filler", "Let me check.".to_owned()),
                ("filler_after_ms", "900".to_owned()),
            ])
            .collect::<Vec<_>>()
    };
    let typo = form("fr juliette", &voices);
    let (status, _, page) = owner.submit(&format!("/agents/{agent}"), &borrowed(&typo)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("id=\"voices-error\"") && page.contains("language=voice"), "{page}");
    let good = form("fr=juliette", &voices);
    let (status, _, _) = owner.submit(&format!("/agents/{agent}"), &borrowed(&good)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let speech = app.get(&format!("/api/v1/agents/{agent}")).await.expect(200)["speech"].clone();
    assert_eq!(
        speech,
        json!({ "speech_to_text_provider_id": voices, "text_to_speech_provider_id": voices, "voices": { "fr": "juliette" },
                "end_of_turn_silence_ms": 1200, "patience_ms": 3500, "backchannels_interrupt": true, "filler": "Let me check.", "filler_after_ms": 900 })
    );

    // Retention: a typo is explained beside its field; a valid policy is saved.
    owner.get("/settings/retention").await;
    let (status, _, page) = owner.submit("/settings/retention", &[("transcript_days", "ten"), ("record_days", "90")]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("Transcripts: must be a whole number of days"), "{page}");
    let (status, _, _) = owner.submit("/settings/retention", &[("transcript_days", "30"), ("record_days", "90")]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(app.get("/api/v1/retention").await.expect(200), json!({ "transcript_days": 30, "record_days": 90, "recording_days": null }));

    // The audit log filters by action.
    let (_, _, page) = owner.get("/settings/audit-log?action=user&actor=").await;
    assert!(page.contains("user.role_changed") && page.contains("user.removed") && !page.contains("api_token.created"), "{page}");
}

on_both_backends!(settings_manage_people_tokens_models_and_retention);

/// Costs in the console: the budget and a provider's prices set in forms (a typo explained beside
/// its field first), then a call's cost on its page and in the list, and the month's spending.
async fn costs_are_set_in_settings_and_shown_on_calls(app: TestApp) {
    add_user(&app, "olga@example.com", Role::Owner).await;
    let mut owner = Visitor::new(&app);
    owner.sign_in("olga@example.com", PASSWORD).await;
    let line = app.phone_line(json!({ "name": "Ava" })).await;

    let (_, _, page) = owner.get("/settings/costs").await;
    assert!(page.contains("No budget") && page.contains("data-prices=\"T\""), "{page}");
    let budget = |limit: &'static str| {
        [("currency", "usd"), ("monthly_limit", limit), ("warn_at_percent", "75"), ("hard_stop", "on"), ("stop_message", "Closed for now.")]
    };
    let (status, _, page) = owner.submit("/settings/costs", &budget("lots")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("Monthly budget: `lots` is not an amount"), "{page}");
    let (status, _, _) = owner.submit("/settings/costs", &budget("50")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let settings = app.get("/api/v1/cost-settings").await.expect(200);
    assert_eq!(
        settings["budget"],
        json!({ "monthly_limit": 50.0, "warn_at_percent": 75, "hard_stop": true, "stop_message": "Closed for now." })
    );

    let prices = format!("/settings/costs/phone/{}", line.provider);
    let fields =
        |per_minute: &'static str| [("per_minute", per_minute), ("conversation_relay_per_minute", "0.07"), ("recording_per_minute", "")];
    let (status, _, page) = owner.submit(&prices, &fields("-1")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("Call, per minute (until Twilio&#39;s own price comes in): -1 is not an amount"), "{page}");
    let (status, _, _) = owner.submit(&prices, &fields("0.0085")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let stored = app.get(&format!("/api/v1/phone-providers/{}/prices", line.provider)).await.expect(200);
    assert_eq!(
        stored,
        json!({ "per_minute": 0.0085, "conversation_relay_per_minute": 0.07, "media_streams_per_minute": 0.0, "recording_per_minute": 0.0 })
    );

    let call_sid = sid("CA", 'k');
    app.ring(&line, &call_sid).await.expect(200);
    let params =
        [("AccountSid", line.account.as_str()), ("CallSid", call_sid.as_str()), ("CallStatus", "completed"), ("CallDuration", "90")];
    app.twilio_post("/twilio/status", &params, Some(LINE_TOKEN)).await.expect(204);
    let call = app.until("/api/v1/calls", |b| b["data"][0]["cost"].is_object()).await["data"][0].clone();
    assert_eq!(call["cost"]["total"], 0.017, "two started minutes at 0.0085: {call}");
    let (_, _, page) = owner.get(&format!("/calls/{}", call["id"].as_str().unwrap())).await;
    assert!(page.contains("USD 0.017") && page.contains("provisional") && page.contains("data-cost-item=\"carrier\""), "{page}");
    assert!(page.contains("<td>2 min</td><td>0.017</td>"), "{page}");
    let app_id = app.get(&format!("/api/v1/agents/{}", line.agent)).await.expect(200)["app_id"].as_str().unwrap().to_owned();
    let (_, _, page) = owner.get(&format!("/apps/{app_id}/calls")).await;
    assert!(page.contains("0.017<span class=\"muted\" title=\"provisional"), "{page}");
    let (_, _, page) = owner.get("/settings/costs").await;
    assert!(page.contains("USD 0.017 <span class=\"muted\">over 1 calls</span>") && page.contains("0% of the USD 50.00 budget"), "{page}");
    let (_, _, page) = owner.get(&format!("/apps/{app_id}/analytics?include_test_calls=true")).await;
    assert!(page.contains("id=\"per-number\"") && page.contains(crate::support::LINE_NUMBER), "{page}");
}

on_both_backends!(costs_are_set_in_settings_and_shown_on_calls);

/// After a call: an automation made in the form (a mistake first), its ticket, the run, and the
/// analytics chart, in Chromium.
#[tokio::test]
async fn in_chromium_an_automation_opens_a_ticket_and_analytics_draw_the_call() {
    let app = spawn_app(Backend::Sqlite).await;
    add_user(&app, "admin@acme.example", Role::Admin).await;
    let call = crate::conversations::ring_agent(&app, json!({ "name": "Ava", "first_message": "Hi, this is Ava." })).await;
    let app_id = app.get("/api/v1/apps").await.expect(200)["data"][0]["id"].as_str().unwrap().to_owned();
    let browser = Browser::open(app.url("")).await;
    browser.sign_in("admin@acme.example", PASSWORD).await;

    browser.go(&format!("/apps/{app_id}/automations")).await;
    assert!(browser.text("main").await.contains("No automations yet"));
    browser.click("a[href$='/automations/new']").await;
    browser.fill("#name", "Follow-up ticket").await;
    browser.press("#action0_type option[value=webhook]").await;
    browser.fill("#action0_url", "not a url").await;
    browser.click("#automation-form button.primary").await;
    let error = browser.text("#action0-error").await;
    assert!(error.starts_with("actions[0].url:"), "{error}");
    assert_eq!(browser.find("#name").await.prop("value").await.unwrap().as_deref(), Some("Follow-up ticket"), "what was typed stays");
    browser.press("#action0_type option[value=create_record]").await;
    browser.fill("#action0_title", "Call back {{ caller }}").await;
    browser.press("#action0_priority option[value=high]").await;
    browser.click("#automation-form button.primary").await;
    assert!(browser.text("#signing-secret").await.starts_with("whsec_"), "the secret is shown once, on creation");
    browser.screenshot("automation").await;
    let automation = app.get(&format!("/api/v1/apps/{app_id}/automations")).await.expect(200)["data"][0].clone();
    assert_eq!(
        automation["actions"][0],
        json!({ "type": "create_record", "title": "Call back {{ caller }}", "description": "{{ summary }}\n\n{{ transcript }}", "priority": "high", "status": "open" })
    );

    call.llm.script([Reply::calls("endConversation", json!({ "summary": "Wants a call back.", "closing_message": "Goodbye!" }))]);
    let mut relay = crate::conversations::connect(&app, &call).await;
    relay.say("Please call me back.").await;
    relay.utterance().await;
    relay.close().await;
    let mut ticket = json!(null);
    for _ in 0..100 {
        ticket = app.get(&format!("/api/v1/apps/{app_id}/tickets")).await.expect(200)["data"][0].clone();
        if !ticket.is_null() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(ticket["title"], "Call back +14155550123");

    browser.go(&format!("/automations/{}", automation["id"].as_str().unwrap())).await;
    assert_eq!(browser.text("li[data-run-status] .badge").await, "succeeded");
    browser.go(&format!("/calls/{}", call.id)).await;
    assert_eq!(browser.text("li[data-run-status] .badge").await, "succeeded", "the call record lists its runs");
    assert!(browser.text("main").await.contains("Call back +14155550123"), "and its ticket");
    browser.go(&format!("/automations/{}", automation["id"].as_str().unwrap())).await;
    assert!(!browser.has("#signing-secret").await, "never shown again");
    browser.go(&format!("/apps/{app_id}/tickets")).await;
    assert!(browser.text("tr[data-ticket='Call back +14155550123']").await.contains("record"));
    browser.press("tr[data-ticket='Call back +14155550123'] select[name=status] option[value=resolved]").await;
    browser.click("tr[data-ticket='Call back +14155550123'] button").await;
    assert!(browser.text(".notice").await.contains("is resolved (high priority)"));
    browser.screenshot("tickets").await;

    browser.click("a[href$='/analytics']").await;
    assert_eq!(browser.text("#total-calls").await, "1");
    assert!(browser.has("svg.chart rect").await, "the volume chart draws the call");
    assert!(browser.text("main").await.contains("agent_ended"));
    browser.screenshot("analytics").await;
    browser.close().await;
}

/// "Testing Your Phone Integration": a test call typed in Chromium goes through the real call
/// path, streams the agent's replies, ends with endConversation, and leaves a test record that
/// analytics leave out unless asked.
#[tokio::test]
async fn in_chromium_a_test_call_talks_to_the_agent_through_the_real_call_path() {
    let app = spawn_app(Backend::Sqlite).await;
    add_user(&app, "admin@acme.example", Role::Admin).await;
    let (llm, line) = crate::conversations::line_with_model(&app, json!({ "name": "Ava", "first_message": "Hi, this is Ava." })).await;
    llm.script([
        Reply::says("We open at nine."),
        Reply::calls("endConversation", json!({ "summary": "Asked for opening hours.", "closing_message": "Goodbye!" })),
    ]);
    let browser = Browser::open(app.url("")).await;
    browser.sign_in("admin@acme.example", PASSWORD).await;
    browser.go(&format!("/numbers/{}/test-call", line.number_id)).await;
    browser.wait_for_text("#test-status", "Connected").await;
    assert!(browser.text("#test-conversation").await.contains("Hi, this is Ava."));
    browser.fill("#test-words", "When do you open?").await;
    browser.press("#test-say button[type=submit]").await;
    browser.wait_for_text("#test-conversation", "We open at nine.").await;
    browser.fill("#test-words", "Thanks, bye.").await;
    browser.press("#test-say button[type=submit]").await;
    browser.wait_for_text("#test-status", "Call over: call ended by the agent (agent_ended)").await;
    browser.wait_for_text("#test-record", "endConversation").await;
    browser.screenshot("test-call").await;
    browser.close().await;

    let call = app.get("/api/v1/calls").await.expect(200)["data"][0].clone();
    assert_eq!(
        (call["is_test"].as_bool(), call["from"].as_str(), call["ended_reason"].as_str()),
        (Some(true), Some("+15555550100"), Some("agent_ended"))
    );
    let app_id = call["app_id"].as_str().unwrap();
    assert_eq!(app.get(&format!("/api/v1/apps/{app_id}/analytics")).await.expect(200)["totals"]["calls"], 0, "test calls are left out");
    assert_eq!(app.get(&format!("/api/v1/apps/{app_id}/analytics?include_test_calls=true")).await.expect(200)["totals"]["calls"], 1);
}

/// The test call's microphone mode in Chromium, whose fake capture device plays a sentence
/// Piper said: the browser's voice reaches the agent through the same Media Streams pipeline as
/// a phone call (here heard and spoken by the embedded engines, no speech vendor), the agent's
/// audio plays back, and the page shows what the server heard.
#[tokio::test]
async fn in_chromium_the_test_calls_microphone_talks_to_the_agent() {
    use switchboard::providers::speech::embedded::{EmbeddedSpeech, NEURAL_VOICE};
    let app = crate::turn_models::app_with_the_models().await;
    add_user(&app, "admin@acme.example", Role::Admin).await;
    let (llm, line) = crate::conversations::line_with_model(&app, json!({ "name": "Ava", "first_message": "Hi, this is Ava." })).await;
    llm.script([Reply::says("Your order ships on Monday.")]);
    let number = format!("/api/v1/phone-numbers/{}", line.number_id);
    app.patch(&number, json!({ "mode": "media_stream" })).await.expect(200);

    // The caller's voice: quiet while the greeting plays, a sentence, then quiet.
    let said = "I need to change my order.";
    let speech = EmbeddedSpeech::new(crate::embedded_speech::engines().await);
    let mut voice = crate::embedded_speech::said(&speech, said, NEURAL_VOICE, "en-US").await.at_rate(16_000).unwrap();
    voice.samples.splice(0..0, std::iter::repeat_n(0, 16_000 * 4));
    voice.samples.extend(std::iter::repeat_n(0, 16_000 * 4));
    let wav = app.data_dir.path().join("caller.wav");
    std::fs::write(&wav, switchboard::audio::wav::encode(&voice)).unwrap();

    let browser = Browser::with_microphone(app.url(""), &wav).await;
    browser.sign_in("admin@acme.example", PASSWORD).await;
    browser.go(&format!("/numbers/{}/test-call", line.number_id)).await;
    browser.wait_for_text("#test-status", "Connected").await;
    browser.press("#test-microphone").await;
    browser.wait_for_text("#test-status", "Listening").await;
    // The agent's answer, as the page heard it played.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !browser.text("#test-conversation").await.contains("Monday") {
        assert!(std::time::Instant::now() < deadline, "no answer: {}", browser.text("#test-conversation").await);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    browser.wait_for_text("#test-record", "Monday").await;
    let record = browser.text("#test-record").await;
    let heard = record.lines().find(|line| line.to_lowercase().contains("order") && !line.contains("Monday")).unwrap_or_default();
    assert!(switchboard::models::scoring::word_error_rate(said, heard) <= 0.34, "the page shows what the server heard: {record}");
    browser.screenshot("test-call-microphone").await;
    browser.close().await;
}

/// A recorded call's page plays its recording in Chromium (the audio streams by byte range, so
/// the player knows its length and seeks), and a turn's time plays from that turn, highlighted.
#[tokio::test]
async fn in_chromium_a_recorded_call_plays_from_the_turn_chosen() {
    use switchboard::domain::recording::RecordingSource;
    use switchboard::recording::{Recordings, store::RecordingStore};
    let app = spawn_app(Backend::Sqlite).await;
    add_user(&app, "admin@acme.example", Role::Admin).await;
    let call = crate::conversations::ring_agent(&app, json!({ "name": "Ava" })).await;
    let call_id = switchboard::domain::ids::CallId(call.id.parse().unwrap());
    let row = switchboard::storage::recordings::start(&app.db, app.org, call_id, RecordingSource::Switchboard, None).await.unwrap();
    let mut relay = crate::conversations::connect(&app, &call).await;
    relay.say("Hello there").await;
    assert_eq!(relay.utterance().await.text, "Okay.");
    relay.close().await;
    let wav = switchboard::audio::wav::encode_two_channels(8000, &vec![300; 8000 * 10], &vec![-300; 8000 * 10]);
    let recordings = Recordings::new(app.db.clone(), RecordingStore::local(app.data_dir.path().join("recordings")));
    assert!(recordings.keep(app.org, row.id, wav, 2, 10_000).await.unwrap());

    let browser = Browser::open(app.url("")).await;
    browser.sign_in("admin@acme.example", PASSWORD).await;
    browser.go(&format!("/calls/{}", call.id)).await;
    let duration =
        || async { browser.client.execute("return document.querySelector('#recording-player').duration", vec![]).await.unwrap() };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !duration().await.as_f64().is_some_and(|d| d > 0.0) {
        assert!(std::time::Instant::now() < deadline, "the player never learned the recording's length");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!((duration().await.as_f64().unwrap() - 10.0).abs() < 0.1, "{}", duration().await);
    browser.press("#conversation .turn.agent:last-of-type button.seek").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !browser.has("#conversation .turn.agent.playing").await {
        assert!(std::time::Instant::now() < deadline, "the turn played was never highlighted");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let playing = browser.text("#conversation .turn.playing").await;
    assert!(playing.contains("Okay."), "{playing}");
    browser.screenshot("call-recording").await;
    browser.close().await;
    // Signed out, the audio is not there to take.
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let anonymous = client.get(app.url(&format!("/calls/{}/recording.wav", call.id))).send().await.unwrap();
    assert!(anonymous.status().is_redirection(), "{}", anonymous.status());
    assert!(anonymous.headers()[LOCATION].to_str().unwrap().contains("sign-in"), "{:?}", anonymous.headers());
}

async fn another_organisations_pages_are_not_found(app: TestApp) {
    let app_id = app.create_app("Front desk").await;
    let agent = app.create_agent(&app_id, "Ava").await;
    let account = sid("AC", '7');
    app.twilio.add_account(&account, "right-token");
    let provider = app
        .post("/api/v1/phone-providers", json!({ "name": "Main", "account_sid": account, "auth_token": "right-token" }))
        .await
        .expect(201);
    let provider = provider["id"].as_str().unwrap().to_owned();
    let (other_org, _) = app.other_org().await;
    users::create(
        &app.db,
        other_org,
        &Email::parse("mallory@other.example").unwrap(),
        &users::hash_password(PASSWORD),
        Role::Owner,
        Actor::System,
    )
    .await
    .unwrap();
    let mut mallory = Visitor::new(&app);
    mallory.sign_in("mallory@other.example", PASSWORD).await;
    let (_, _, page) = mallory.get("/apps").await;
    assert!(page.contains("No apps yet"), "another organisation's apps are not listed");
    for path in [format!("/apps/{app_id}/numbers"), format!("/agents/{agent}"), format!("/settings/phone-providers/{provider}/edit")] {
        let (status, _, page) = mallory.get(&path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(page.contains("does not exist"), "{page}");
    }
    mallory.get("/settings/phone-providers").await;
    let (status, _, _) = mallory.submit(&format!("/settings/phone-providers/{provider}/edit"), &[("name", "Stolen")]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(app.get(&format!("/api/v1/phone-providers/{provider}")).await.expect(200)["name"], "Main");

    // The owner edits the provider: a new name, then a wrong token that Twilio's check refuses.
    add_user(&app, "olga@example.com", Role::Owner).await;
    let mut owner = Visitor::new(&app);
    owner.sign_in("olga@example.com", PASSWORD).await;
    owner.get(&format!("/settings/phone-providers/{provider}/edit")).await;
    let (status, to, _) =
        owner.submit(&format!("/settings/phone-providers/{provider}/edit"), &[("name", "Main line"), ("auth_token", "")]).await;
    assert_eq!((status, to.as_str()), (StatusCode::SEE_OTHER, "/settings/phone-providers"));
    owner.submit(&format!("/settings/phone-providers/{provider}/edit"), &[("name", "Main line"), ("auth_token", "wrong-token")]).await;
    let (_, _, page) = owner.get("/settings/phone-providers").await;
    assert!(
        page.contains("“Main line” saved. Twilio&#39;s check: Invalid credentials.")
            || page.contains("“Main line” saved. Twilio's check: Invalid credentials."),
        "{page}"
    );
}

on_both_backends!(another_organisations_pages_are_not_found);

/// In Chromium: every page renders (screenshots at both widths); a page on another origin that
/// posts a form to the console with the victim's cookies is refused; a member sees everything
/// read-only; five wrong passwords lock an account with a clear message.
#[tokio::test]
async fn in_chromium_pages_render_forged_forms_fail_members_only_read_and_wrong_passwords_lock() {
    let app = spawn_app(Backend::Sqlite).await;
    add_user(&app, "olga@example.com", Role::Owner).await;
    add_user(&app, "dan@example.com", Role::Member).await;
    let call = crate::conversations::ring_agent(&app, json!({ "name": "Ava" })).await;
    let app_id = app.get("/api/v1/apps").await.expect(200)["data"][0]["id"].as_str().unwrap().to_owned();
    let agent = call.line.agent.clone();
    let browser = Browser::open(app.url("")).await;
    browser.sign_in("olga@example.com", PASSWORD).await;
    let pages = [
        ("apps", "/apps".to_owned()),
        ("numbers", format!("/apps/{app_id}/numbers")),
        ("add-number-form", format!("/apps/{app_id}/numbers/new")),
        ("agents", format!("/apps/{app_id}/agents")),
        ("agent-page", format!("/agents/{agent}")),
        ("calls", format!("/apps/{app_id}/calls")),
        ("call-live", format!("/calls/{}", call.id)),
        ("automations", format!("/apps/{app_id}/automations")),
        ("automation-form", format!("/apps/{app_id}/automations/new")),
        ("tickets", format!("/apps/{app_id}/tickets")),
        ("analytics-empty", format!("/apps/{app_id}/analytics")),
        ("settings-phone-providers", "/settings/phone-providers".to_owned()),
        ("settings-llm-providers", "/settings/llm-providers".to_owned()),
        ("settings-speech-providers", "/settings/speech-providers".to_owned()),
        ("settings-users", "/settings/users".to_owned()),
        ("settings-api-tokens", "/settings/api-tokens".to_owned()),
        ("settings-retention", "/settings/retention".to_owned()),
        ("settings-audit-log", "/settings/audit-log".to_owned()),
        ("settings-sessions", "/settings/sessions".to_owned()),
        ("settings-password", "/settings/password".to_owned()),
    ];
    for (name, path) in &pages {
        browser.go(path).await;
        assert!(browser.has("main h1").await, "{path} has a heading");
        assert!(!browser.text("main").await.contains("Something went wrong"), "{path}");
        browser.screenshot(name).await;
    }

    // A page on another origin (same site: cookies go along) posts a form to the console.
    let attacker = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let attacker_url = format!("http://{}", attacker.local_addr().unwrap());
    let target = app.url("/apps");
    let page = format!(
        r#"<html><body><form id="f" method="post" action="{target}"><input name="name" value="Forged"></form><script>document.getElementById("f").submit()</script></body></html>"#
    );
    let router = axum::Router::new().route("/", axum::routing::get(move || async move { axum::response::Html(page) }));
    tokio::spawn(async move { axum::serve(attacker, router).await.unwrap() });
    browser.client.goto(&attacker_url).await.unwrap();
    browser.wait_for_text("body", "refused").await;
    assert!(app_names(&app).await.iter().all(|name| name != "Forged"), "nothing was created");
    // So is a same-origin request without the session's token.
    browser.go("/apps").await;
    let status = browser
        .client
        .execute("return fetch('/apps', { method: 'POST', body: new URLSearchParams({ name: 'No token' }) }).then(r => r.status)", vec![])
        .await
        .unwrap();
    assert_eq!(status, json!(403));
    assert!(app_names(&app).await.iter().all(|name| name != "No token"));
    browser.click("form[action='/sign-out'] button").await;

    // A member reads everything and is offered nothing to change.
    browser.sign_in("dan@example.com", PASSWORD).await;
    browser.go(&format!("/apps/{app_id}/numbers")).await;
    assert!(browser.text(".readonly").await.contains("read-only access"));
    assert!(!browser.has("a[href$='/numbers/new']").await && !browser.has("a.danger").await);
    browser.go(&format!("/agents/{agent}")).await;
    assert!(!browser.has("#agent-form button[type=submit]").await, "no Save for members");
    browser.screenshot("member-agent").await;
    let member_token = tokens_for_member(&app).await;
    assert_eq!(app.send(reqwest::Method::POST, "/api/v1/apps", Some(&member_token), Some(&json!({ "name": "x" }))).await.status, 403);
    browser.click("form[action='/sign-out'] button").await;

    // Five wrong passwords lock the account, and the page says so.
    for _ in 0..5 {
        browser.sign_in("olga@example.com", "not my password").await;
    }
    assert!(browser.text("#sign-in-error").await.contains("This account is locked after 5 failed sign-ins"));
    browser.sign_in("olga@example.com", PASSWORD).await;
    assert!(browser.text("#sign-in-error").await.contains("locked"), "even the right password waits");
    browser.screenshot("sign-in-locked").await;
    browser.close().await;
}

/// A member API token of the test app's organisation.
async fn tokens_for_member(app: &TestApp) -> String {
    app.post("/api/v1/api-tokens", json!({ "name": "reader", "role": "member" })).await.expect(201)["token"].as_str().unwrap().to_owned()
}

/// Form fields as the `submit` helper takes them.
fn borrowed<'a>(fields: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    fields.iter().map(|(k, v)| (*k, v.as_str())).collect()
}
