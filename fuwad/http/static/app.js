// The admin page's entry: sign-in, sign-out, roles and the refresh loop.
//
// Each part of the page (overview, jobs, job detail, workers) lives in its
// own module and gets a small context from here, so that the parts never
// import each other.  The page refreshes every two seconds while the tab
// is visible, one round at a time, and backs off when the server struggles.

import { API, ApiError, fetchApi, forgetToken, getToken, setToken }
  from "./api.js";
import { byId, setText, show } from "./dom.js";
import { Detail } from "./detail.js";
import { duration } from "./format.js";
import { Jobs } from "./jobs.js";
import { Overview } from "./overview.js";
import { toast } from "./ui.js";
import { Workers } from "./workers.js";

const REFRESH_MS = 2000;
const MAX_BACKOFF_MS = 30000;
const RANKS = { viewer: 0, operator: 1, admin: 2 };

// What a signed-in page says when its token stops working.
const TOKEN_GONE = "Your token was revoked or has expired; sign in with a " +
  "new one.";

// defaultMax: the server's [queue] worker_max_attempts, from its stats.
const session = { name: "", role: "", live: false, defaultMax: null };
let timer = null;
let running = false;
let backoffMs = REFRESH_MS;
let lastGood = 0;

// What each part of the page may ask of the rest.
const ctx = {
  role: () => session.role,
  can: (needed) => session.live &&
    (RANKS[session.role] ?? -1) >= (RANKS[needed] ?? 99),
  openJob: (id, opener) => parts.detail.open(id, opener),
  refreshSoon: () => refreshSoon(),
  fail: (err, what, needed) => fail(err, what, needed),
  defaultMax: () => session.defaultMax,
  setDefaultMax: (value) => setDefaultMax(value),
};

const parts = {
  overview: new Overview(ctx),
  jobs: new Jobs(ctx),
  detail: new Detail(ctx),
  workers: new Workers(ctx),
};

function setDefaultMax(value) {
  const known = Number.isInteger(value) ? value : null;
  if (known !== session.defaultMax) {
    session.defaultMax = known;
    parts.jobs.redraw();
    parts.detail.redraw();
  }
}

// Report a failed action the same way everywhere.
function fail(err, what, needed = "") {
  if (!(err instanceof ApiError)) {
    console.error(err);
    toast(`${what} failed: ${err.message}`, "error");
    return;
  }
  if (err.status === 401) {
    signOut(TOKEN_GONE);
  } else if (err.status === 403) {
    const role = needed ? `the ${needed} role` : "a higher role";
    toast(`${what} needs ${role}; you are signed in as ${session.role}. ` +
      `(${err.message})`, "error");
  } else if (err.status === 404) {
    toast(`${what}: ${err.message}`, "error");
  } else {
    toast(`${what} failed: ${err.message}`, "error");
  }
}

// Show only the controls this role may use.
function applyRole() {
  for (const node of document.querySelectorAll("[data-needs]")) {
    const allowed = ctx.can(node.dataset.needs);
    node.classList.toggle("not-allowed", !allowed);
    if (!allowed) {
      node.hidden = true;
    } else if (!node.hasAttribute("data-managed")) {
      node.hidden = false;
    }
  }
}

async function signIn(token) {
  const who = await fetchApi(`${API}/whoami`, null, "GET", token);
  setToken(token);
  session.name = who.name;
  session.role = who.role;
  session.live = true;
  setText(byId("who-name"), who.name);
  setText(byId("who-role"), who.role);
  show(byId("signin"), false);
  show(byId("who"), true);
  show(byId("app"), true);
  applyRole();
  backoffMs = REFRESH_MS;
  parts.jobs.reset();
  refreshSoon();
}

function signOut(message = "") {
  forgetToken();
  session.name = "";
  session.role = "";
  session.live = false;
  session.defaultMax = null;
  window.clearTimeout(timer);
  timer = null;
  parts.detail.close();
  for (const part of Object.values(parts)) {
    part.clear();
  }
  const confirm = byId("confirm-dialog");
  if (confirm.open) {
    confirm.close("cancel");
  }
  applyRole();
  show(byId("app"), false);
  show(byId("who"), false);
  show(byId("signin"), true);
  setText(byId("signin-message"), message);
  const input = byId("token");
  input.value = "";
  input.focus();
}

function setStatus(text, trouble) {
  const node = byId("live");
  setText(node, text);
  node.classList.toggle("trouble", trouble);
}

// One round: every part fetches what it shows, side by side.
async function refresh() {
  if (running || !session.live) {
    return;
  }
  running = true;
  let delay = REFRESH_MS;
  try {
    const results = await Promise.allSettled(
      Object.values(parts).map((part) => part.refresh()),
    );
    const errors = results.filter((r) => r.status === "rejected")
      .map((r) => r.reason);
    const unauthorized = errors.find((e) => e instanceof ApiError &&
      e.status === 401);
    if (unauthorized) {
      signOut(TOKEN_GONE);
      return;
    }
    if (!session.live) {
      return;
    }
    const serious = errors.find((e) => !(e instanceof ApiError) ||
      [0, 429].includes(e.status) || e.status >= 500);
    if (serious) {
      // Slow down while the server cannot keep up or is away.
      backoffMs = Math.min(MAX_BACKOFF_MS, Math.max(
        backoffMs * 2, (serious.retryAfter || 0) * 1000,
      ));
      delay = backoffMs;
      if (!(serious instanceof ApiError)) {
        console.error(serious);
      }
      const ago = lastGood ? `; last update ${duration(
        (Date.now() - lastGood) / 1000)} ago` : "";
      setStatus(`${serious.message}${ago}`, true);
    } else {
      backoffMs = REFRESH_MS;
      lastGood = Date.now();
      setStatus("live", false);
    }
  } finally {
    running = false;
    if (session.live && document.hidden) {
      // The tab was hidden while this round ran: stay paused.
      setStatus("paused", false);
    } else if (session.live) {
      window.clearTimeout(timer);
      timer = window.setTimeout(refresh, delay);
    }
  }
}

function refreshSoon() {
  window.clearTimeout(timer);
  timer = null;
  if (running) {
    // The round in flight ends by scheduling the next; make it soon.
    timer = window.setTimeout(refreshSoon, 50);
    return;
  }
  refresh();
}

function onVisibility() {
  if (!session.live) {
    return;
  }
  if (document.hidden) {
    window.clearTimeout(timer);
    timer = null;
    setStatus("paused", false);
  } else {
    refreshSoon();
  }
}

function boot() {
  byId("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = byId("token");
    const token = input.value.trim();
    const button = byId("signin-submit");
    if (!token) {
      setText(byId("signin-message"), "Paste a token first.");
      input.focus();
      return;
    }
    button.disabled = true;
    setText(byId("signin-message"), "");
    try {
      await signIn(token);
      input.value = "";
    } catch (err) {
      forgetToken();
      const why = err instanceof ApiError && err.status === 401
        ? `That token was not accepted: ${err.message}`
        : `Cannot sign in: ${err.message}`;
      setText(byId("signin-message"), why);
      input.focus();
    } finally {
      button.disabled = false;
    }
  });
  byId("sign-out").addEventListener("click", () => signOut("Signed out."));
  document.addEventListener("visibilitychange", onVisibility);

  const saved = getToken();
  if (!saved) {
    signOut("");
    return;
  }
  signIn(saved).catch((err) => {
    const why = err instanceof ApiError && err.status === 401
      ? TOKEN_GONE : `Cannot sign in: ${err.message}`;
    signOut(why);
  });
}

boot();
