// Switchboard console: small conveniences on top of pages that work without JavaScript.

// Times are rendered in UTC by the server; show them in the browser's time zone.
const format = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
for (const element of document.querySelectorAll("time[datetime]")) {
  const at = new Date(element.getAttribute("datetime"));
  if (!Number.isNaN(at.getTime())) {
    element.title = element.textContent;
    element.textContent = format.format(at);
  }
}
