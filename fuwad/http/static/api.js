// The page's only way to the REST API: fetchApi and the session's token.
//
// The token lives in this tab's sessionStorage and nowhere else: never a
// cookie, so a forged cross-site request carries nothing, and it is gone
// when the tab closes.  Every failure, whatever its cause, becomes one
// ApiError that the page shows the same way everywhere.

const TOKEN_KEY = "fuwad.token";

export const API = "/api/queue";

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

const KINDS = {
  0: "network",
  400: "bad-request",
  401: "unauthorized",
  403: "forbidden",
  404: "not-found",
  405: "bad-request",
  409: "conflict",
  413: "bad-request",
  429: "rate-limited",
  503: "unavailable",
};

const FALLBACK = {
  0: "cannot reach the server; check that fuwad http runs",
  400: "the server refused the request as malformed",
  401: "the token was not accepted; sign in again",
  403: "your token's role does not allow this",
  404: "not found",
  413: "the request is too large",
  429: "too many requests; the page will slow down and try again",
  500: "the server failed; see its log",
  503: "the daemon is not reachable; check that fuwad runs",
};

// One kind of error for every failure: status 0 means no answer at all.
export class ApiError extends Error {
  constructor(status, message, retryAfter = 0) {
    super(message || FALLBACK[status] || `the server answered ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.kind = KINDS[status] || (status >= 500 ? "server" : "error");
    this.retryAfter = retryAfter;
  }
}

// The server's clock minus ours, from the Date header, so "3 s ago" means
// the same as the database's now().
let skewMs = 0;

export function serverNow() {
  return Date.now() + skewMs;
}

function noteServerDate(response) {
  const date = Date.parse(response.headers.get("Date") || "");
  if (Number.isFinite(date)) {
    const skew = date - Date.now();
    // The header has whole seconds: ignore what rounding alone explains.
    skewMs = Math.abs(skew) > 1500 ? skew : 0;
  }
}

function withQuery(url, data) {
  const target = new URL(url, window.location.origin);
  for (const [key, value] of Object.entries(data || {})) {
    if (value !== null && value !== undefined && value !== "") {
      target.searchParams.set(key, String(value));
    }
  }
  return target.pathname + target.search;
}

// Call the API and return the envelope's data, or throw an ApiError.
// The token comes from the session unless given; data goes as query
// parameters for GET and as a JSON body otherwise.
export async function fetchApi(url, data = null, method = "GET", token = null) {
  const bearer = token ?? getToken();
  const verb = method.toUpperCase();
  const headers = { Accept: "application/json" };
  if (bearer) {
    headers.Authorization = `Bearer ${bearer}`;
  }
  const init = {
    method: verb,
    headers,
    cache: "no-store",
    credentials: "omit",
    redirect: "error",
  };
  let target = url;
  if (verb === "GET" || verb === "HEAD") {
    target = withQuery(url, data);
  } else if (data !== null) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(data);
  }

  let response;
  try {
    response = await fetch(target, init);
  } catch (err) {
    throw new ApiError(0, FALLBACK[0]);
  }
  noteServerDate(response);

  let envelope = null;
  try {
    envelope = await response.json();
  } catch (err) {
    envelope = null;
  }
  const ok = response.ok && envelope && envelope.success === true;
  if (!ok) {
    const said = envelope && typeof envelope.error === "string"
      ? envelope.error : "";
    const wait = Number(response.headers.get("Retry-After")) || 0;
    throw new ApiError(response.status || 500, said, wait);
  }
  return envelope.data;
}
