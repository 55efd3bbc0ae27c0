// Switchboard console: small conveniences on top of pages that work without JavaScript.

// Times are rendered in UTC by the server; show them in the browser's time zone.
const format = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
function localTimes(root) {
  for (const element of root.querySelectorAll("time[datetime]")) {
    const at = new Date(element.getAttribute("datetime"));
    if (!Number.isNaN(at.getTime())) {
      element.title = element.textContent;
      element.textContent = format.format(at);
    }
  }
}
localTimes(document);

// "Add Phone Number": numbers for sale appear as the area code is typed. The search form works
// without this (its Search button); here the same page is fetched and its offers swapped in.
for (const input of document.querySelectorAll("input[data-live-search]")) {
  const target = document.querySelector(input.dataset.liveSearch);
  let pending;
  input.addEventListener("input", () => {
    clearTimeout(pending);
    if (!/^\d{3}$/.test(input.value.trim())) return;
    pending = setTimeout(async () => {
      const query = new URLSearchParams(new FormData(input.form));
      const response = await fetch(`${input.form.action}?${query}`, { headers: { Accept: "text/html" } });
      if (!response.ok || !target) return;
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = page.querySelector(input.dataset.liveSearch);
      if (fresh) target.replaceChildren(...fresh.childNodes);
    }, 250);
  });
}

// Choosing another provider shows its numbers at once.
for (const select of document.querySelectorAll("select[data-submit-on-change]")) {
  select.addEventListener("change", () => select.form.requestSubmit());
}

// Live parts of a page (the calls list, a call's conversation) carry data-refresh="seconds":
// the page is fetched again and the part swapped, until the part no longer asks for it.
for (const part of document.querySelectorAll("[data-refresh][id]")) {
  const refresh = async () => {
    const response = await fetch(location.href, { headers: { Accept: "text/html" } });
    if (!response.ok) return;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html").getElementById(part.id);
    if (!fresh) return;
    part.replaceChildren(...fresh.childNodes);
    localTimes(part);
    if (fresh.dataset.refresh) setTimeout(refresh, fresh.dataset.refresh * 1000);
  };
  setTimeout(refresh, part.dataset.refresh * 1000);
}

// Automation steps show only the fields of the chosen action type (all show without JavaScript).
document.documentElement.classList.add("js");
for (const select of document.querySelectorAll("select[data-action-type]")) {
  const show = () => {
    for (const part of select.closest("fieldset").querySelectorAll("[data-for]")) {
      part.classList.toggle("chosen", part.dataset.for === select.value);
    }
  };
  select.addEventListener("change", show);
  show();
}

// Analytics: without a chosen time zone, show the report in the browser's own.
for (const input of document.querySelectorAll("input[data-browser-time-zone]")) {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (!input.value && zone && zone !== "UTC") {
    input.value = zone;
    input.form.requestSubmit();
  }
}

// A call's recording: the turn being played is highlighted, and a turn's time plays from there.
const player = document.querySelector("#recording-player");
if (player) {
  const turns = () => [...document.querySelectorAll("#conversation .turn[data-at-ms]")];
  player.addEventListener("timeupdate", () => {
    const now = player.currentTime * 1000;
    let playing = null;
    for (const turn of turns()) {
      if (Number(turn.dataset.atMs) <= now) playing = turn;
    }
    for (const turn of turns()) turn.classList.toggle("playing", turn === playing && !player.paused);
  });
  player.addEventListener("pause", () => turns().forEach((turn) => turn.classList.remove("playing")));
  document.querySelector("#conversation").addEventListener("click", (event) => {
    const seek = event.target.closest("button.seek");
    if (!seek) return;
    player.currentTime = Number(seek.closest(".turn").dataset.atMs) / 1000;
    player.play();
  });
}
