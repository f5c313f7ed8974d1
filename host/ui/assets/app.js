// Stepwise dashboard: the only script. It asks before posting a form marked data-confirm,
// and redraws a page whose <main> names a live stream (data-live) whenever that stream says
// something changed. No inline script exists on any page (the Content-Security-Policy
// forbids it); what is redrawn is the server's own escaped HTML for the same page.
"use strict";

document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form instanceof HTMLFormElement ? form.dataset.confirm : undefined;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

const main = document.querySelector("main[data-live]");
// At most one redraw a second, however busy the stream.
const MIN_GAP_MS = 1000;
let source = null;
let busy = false;
let again = false;
let lastRedraw = 0;

// Whether the reader is in the middle of something a redraw would undo.
function interacting() {
  const active = document.activeElement;
  const typing = active && main.contains(active) && active.matches("input, select, textarea");
  const selection = window.getSelection();
  return typing || (selection && !selection.isCollapsed);
}

async function redraw() {
  if (busy) {
    again = true;
    return;
  }
  busy = true;
  try {
    const wait = lastRedraw + MIN_GAP_MS - Date.now();
    if (wait > 0) {
      await new Promise((done) => setTimeout(done, wait));
    }
    while (interacting()) {
      await new Promise((done) => setTimeout(done, 500));
    }
    lastRedraw = Date.now();
    const response = await fetch(window.location.href, { credentials: "same-origin" });
    if (response.redirected) {
      // Signed out meanwhile: show where the server sent us.
      window.location.assign(response.url);
      return;
    }
    if (!response.ok) {
      stopped(`live updates stopped (the page answered ${response.status})`);
      return;
    }
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const next = page.querySelector("main");
    if (!next) {
      return;
    }
    main.replaceChildren(...Array.from(next.childNodes, (n) => document.importNode(n, true)));
    main.dataset.redrawn = String(Number(main.dataset.redrawn || 0) + 1);
    const url = next.dataset.live;
    if (!url) {
      close();
    } else if (url !== main.dataset.live) {
      main.dataset.live = url;
      follow(url);
    }
  } catch (error) {
    // The network failed: the stream's reconnect will ask for another redraw.
    console.warn("redraw failed", error);
  } finally {
    busy = false;
    if (again) {
      again = false;
      redraw();
    }
  }
}

function close() {
  if (source) {
    source.close();
    source = null;
  }
  main.dataset.following = "closed";
}

function stopped(why) {
  close();
  if (!main.querySelector(".live-stopped")) {
    const note = document.createElement("p");
    note.className = "live-stopped error";
    note.textContent = why;
    main.prepend(note);
  }
}

function follow(url) {
  close();
  const mine = new EventSource(url);
  source = mine;
  let opened = false;
  mine.addEventListener("open", () => {
    main.dataset.following = "open";
    // A reconnect (after the server or the network dropped the stream): catch up.
    if (opened) {
      redraw();
    }
    opened = true;
  });
  mine.addEventListener("error", () => {
    if (mine.readyState === EventSource.CLOSED && source === mine) {
      stopped("live updates stopped: reload the page to resume them");
    }
  });
  for (const kind of ["timeline", "changed", "end", "gone"]) {
    mine.addEventListener(kind, redraw);
  }
  // The first state tells nothing the page does not show; later ones redraw.
  let states = 0;
  mine.addEventListener("state", () => {
    states += 1;
    if (states > 1) {
      redraw();
    }
  });
}

if (main && "EventSource" in window) {
  follow(main.dataset.live);
}
