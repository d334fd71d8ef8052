//! The local web UI: what an operator on site sees in a browser, served by the management API's
//! listener (TLS with the device certificate) under `/ui/`.
//!
//! Pages are rendered on the server; one small script asks before dangerous actions and keeps
//! live sections fresh. Nothing is loaded from elsewhere, so it works offline.
//!
//! Login takes an API token (its role applies) or the local administrator password (operator;
//! the first-start password must be changed at the first login). A login opens a session held
//! in memory and named by a cookie that is `HttpOnly`, `Secure` (on TLS) and `SameSite=Strict`.
//! Every state-changing form carries the session's CSRF token, and a POST whose `Origin` or
//! `Sec-Fetch-Site` says it came from another site is refused before anything else. Roles are
//! enforced here, on the server: a viewer sees no operator buttons, and its POSTs are 403.

mod history;
mod pages;
mod render;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::header::{HeaderValue, LOCATION, SET_COOKIE};
use hyper::{Request, Response, StatusCode};
use outpost_security::{Identity, PasswordCheck, Role, UI_ADMIN_USER, UiPassword};

use crate::appliance::Appliance;
use crate::system::SystemMonitor;
pub(crate) use history::History;

use crate::api::Body;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "outpost_ui";
/// A session ends after this long without a request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after login whatever happens.
pub const MAX_SESSION: Duration = Duration::from_secs(12 * 3600);
/// Failed logins from one address before it must wait.
const MAX_FAILURES: u32 = 10;
/// How long an address that failed too often waits.
const LOCKOUT: Duration = Duration::from_secs(300);
/// Sessions held at most; the oldest go first.
const MAX_SESSIONS: usize = 256;
/// Largest form accepted.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// One logged-in browser.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub identity: Identity,
    pub csrf: String,
    pub must_change: bool,
    pub via_password: bool,
    created: Instant,
    last_seen: Instant,
    pub flash: Option<(bool, String)>,
}

impl Session {
    pub fn may_write(&self) -> bool {
        self.identity.role == Role::Operator
    }
}

/// The web UI's state: the password store, the sessions, the machine monitor and the charts'
/// history.
pub(crate) struct WebUi {
    tls: bool,
    password: Result<UiPassword, String>,
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
    pub monitor: SystemMonitor,
    pub history: Mutex<History>,
}

impl WebUi {
    /// The UI of the host whose data directory is `data_dir`; creates the first-login password
    /// on first start and returns it.
    pub fn new(data_dir: &Path, tls: bool) -> (WebUi, Option<String>) {
        let (password, created) = match UiPassword::ensure(data_dir) {
            Ok((store, created)) => (Ok(store), created),
            Err(e) => {
                tracing::error!(error = %e, "web UI password store unusable: password login is off, API tokens still work");
                (Err(e.to_string()), None)
            }
        };
        (
            WebUi {
                tls,
                password,
                sessions: Mutex::new(HashMap::new()),
                failures: Mutex::new(HashMap::new()),
                monitor: SystemMonitor::default(),
                history: Mutex::new(History::default()),
            },
            created,
        )
    }

    /// Samples the charts' numbers until the host stops.
    pub fn spawn_sampler(self: &Arc<Self>, app: &Arc<Appliance>) {
        let (ui, weak) = (self.clone(), Arc::downgrade(app));
        let mut stop = app.shutdown_signal();
        app.track(tokio::spawn(async move {
            let mut tick = tokio::time::interval(history::SAMPLE_EVERY);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => return,
                }
                let Some(app) = weak.upgrade() else { return };
                let sample = history::sample(&app);
                lock(&ui.history).push(sample);
            }
        }));
    }

    fn session(&self, req: &Request<Incoming>) -> Option<(String, Session)> {
        let id = cookie(req, SESSION_COOKIE)?;
        let mut sessions = lock(&self.sessions);
        let s = sessions.get_mut(&id)?;
        let now = Instant::now();
        if now.duration_since(s.last_seen) > IDLE_TIMEOUT
            || now.duration_since(s.created) > MAX_SESSION
        {
            sessions.remove(&id);
            return None;
        }
        s.last_seen = now;
        let session = s.clone();
        s.flash = None;
        Some((id, session))
    }

    fn open_session(
        &self,
        identity: Identity,
        must_change: bool,
        via_password: bool,
    ) -> Result<String, String> {
        let id = outpost_security::random_secret().map_err(|e| e.to_string())?;
        let csrf = outpost_security::random_secret().map_err(|e| e.to_string())?;
        let now = Instant::now();
        let mut sessions = lock(&self.sessions);
        sessions.retain(|_, s| {
            now.duration_since(s.last_seen) <= IDLE_TIMEOUT
                && now.duration_since(s.created) <= MAX_SESSION
        });
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            id.clone(),
            Session {
                identity,
                csrf,
                must_change,
                via_password,
                created: now,
                last_seen: now,
                flash: None,
            },
        );
        Ok(id)
    }

    fn set_flash(&self, id: &str, ok: bool, message: impl Into<String>) {
        if let Some(s) = lock(&self.sessions).get_mut(id) {
            s.flash = Some((ok, message.into()));
        }
    }

    /// Shows the outcome of an action on the session's next page.
    fn flash_outcome(&self, id: &str, outcome: Result<String, String>, failed: &str) {
        match outcome {
            Ok(done) => self.set_flash(id, true, done),
            Err(e) => self.set_flash(id, false, format!("{failed}: {e}")),
        }
    }

    fn session_cookie(&self, id: &str, max_age: u64) -> HeaderValue {
        let secure = if self.tls { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{SESSION_COOKIE}={id}; Path=/; HttpOnly{secure}; SameSite=Strict; Max-Age={max_age}"
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("outpost_ui=; Path=/; Max-Age=0"))
    }

    /// Whether `peer` failed to log in too often lately.
    fn locked_out(&self, peer: IpAddr) -> bool {
        let failures = lock(&self.failures);
        failures
            .get(&peer)
            .is_some_and(|(since, n)| *n >= MAX_FAILURES && since.elapsed() < LOCKOUT)
    }

    fn record_failure(&self, peer: IpAddr) {
        let mut failures = lock(&self.failures);
        let entry = failures.entry(peer).or_insert((Instant::now(), 0));
        if entry.0.elapsed() > LOCKOUT {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
    }
}

/// Whether `path` belongs to the web UI.
pub(crate) fn serves(path: &str) -> bool {
    path == "/" || path == "/ui" || path.starts_with("/ui/")
}

/// Serves one web UI request. `verify` checks an API token.
pub(crate) async fn handle(
    ui: &Arc<WebUi>,
    app: &Arc<Appliance>,
    verify: &(dyn Fn(&str) -> Option<Identity> + Sync),
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    let mut resp = route(ui, app, verify, req, peer).await;
    let headers = resp.headers_mut();
    for (name, value) in [
        (
            "content-security-policy",
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
        ("cache-control", "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    resp
}

async fn route(
    ui: &Arc<WebUi>,
    app: &Arc<Appliance>,
    verify: &(dyn Fn(&str) -> Option<Identity> + Sync),
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let method = req.method().as_str().to_string();
    match (method.as_str(), path.as_str()) {
        ("GET", "/" | "/ui") => return redirect("/ui/"),
        ("GET", "/ui/static/style.css") => {
            return crate::api::respond(
                StatusCode::OK,
                "text/css; charset=utf-8",
                include_str!("style.css"),
            );
        }
        ("GET", "/ui/static/app.js") => {
            return crate::api::respond(
                StatusCode::OK,
                "text/javascript; charset=utf-8",
                include_str!("app.js"),
            );
        }
        ("GET", "/ui/login") => {
            if ui.session(&req).is_some() {
                return redirect("/ui/");
            }
            return html(
                StatusCode::OK,
                pages::login(app, ui.password.as_ref().err(), None),
            );
        }
        ("POST", "/ui/login") => return login(ui, app, verify, req, peer).await,
        _ => {}
    }
    let Some((sid, session)) = ui.session(&req) else {
        return if method == "GET" && !path.starts_with("/ui/live/") {
            let next = if query.is_empty() {
                path.clone()
            } else {
                format!("{path}?{query}")
            };
            redirect(&format!("/ui/login?next={}", render::url_encode(&next)))
        } else {
            // A POST without a session: a forged cross-site form lands here, because the
            // SameSite=Strict cookie is not sent with it.
            html(
                StatusCode::FORBIDDEN,
                pages::message(
                    app,
                    "Not logged in",
                    "This action needs a logged-in session. Nothing was changed.",
                ),
            )
        };
    };
    let form = if method == "POST" {
        if let Err(why) = same_origin(&req) {
            tracing::warn!(%peer, %path, why, "web UI: cross-site POST refused");
            return html(
                StatusCode::FORBIDDEN,
                pages::message(app, "Refused", &format!("{why}. Nothing was changed.")),
            );
        }
        let form = match crate::api::read_body(req, MAX_FORM_BYTES).await {
            Ok(body) => parse_form(&body),
            Err(resp) => return resp,
        };
        let given = form.get("csrf").map(String::as_str).unwrap_or("");
        if !constant_time_eq(given.as_bytes(), session.csrf.as_bytes()) {
            tracing::warn!(%peer, %path, user = %session.identity.name, "web UI: POST without a valid CSRF token refused");
            return html(
                StatusCode::FORBIDDEN,
                pages::message(
                    app,
                    "Refused",
                    "The form's CSRF token is missing or wrong (reload the page and try again). Nothing was changed.",
                ),
            );
        }
        Some(form)
    } else {
        None
    };
    if session.must_change && !matches!(path.as_str(), "/ui/password" | "/ui/logout") {
        return redirect("/ui/password");
    }
    let ctx = pages::Ctx {
        app,
        ui,
        session: &session,
        query: &query,
    };
    match (method.as_str(), path.as_str(), form) {
        ("POST", "/ui/logout", _) => {
            lock(&ui.sessions).remove(&sid);
            let mut resp = redirect("/ui/login");
            resp.headers_mut()
                .insert(SET_COOKIE, ui.session_cookie("", 0));
            resp
        }
        ("GET", "/ui/password", _) => html(StatusCode::OK, pages::password(&ctx, None)),
        ("POST", "/ui/password", Some(form)) => change_password(ui, &sid, &ctx, &form),
        ("GET", "/ui/", _) => html(StatusCode::OK, pages::overview(&ctx).await),
        ("GET", "/ui/plugins", _) => html(StatusCode::OK, pages::plugins(&ctx)),
        ("GET", "/ui/network", _) => html(StatusCode::OK, pages::network(&ctx)),
        ("GET", "/ui/shares", _) => html(StatusCode::OK, pages::shares(&ctx)),
        ("GET", "/ui/security", _) => html(StatusCode::OK, pages::security(&ctx)),
        ("GET", "/ui/logs", _) => html(StatusCode::OK, pages::logs(&ctx)),
        ("GET", "/ui/diagnostics", _) => html(StatusCode::OK, pages::diagnostics(&ctx)),
        ("GET", "/ui/diagnostics/bundle", _) => {
            match crate::diagnostics::bundle(app, &ui.monitor).await {
                Ok(b) => {
                    tracing::info!(%peer, user = %session.identity.name, file = %b.file_name, "support bundle downloaded");
                    let mut resp = crate::api::respond(StatusCode::OK, "application/gzip", b.bytes);
                    if let Ok(v) =
                        HeaderValue::from_str(&format!("attachment; filename=\"{}\"", b.file_name))
                    {
                        resp.headers_mut().insert("content-disposition", v);
                    }
                    resp
                }
                Err(e) => html(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    pages::message(app, "Diagnostics failed", &e.to_string()),
                ),
            }
        }
        ("GET", "/ui/power", _) => html(StatusCode::OK, pages::power(&ctx)),
        ("GET", "/ui/live/overview", _) => html(StatusCode::OK, pages::overview_live(&ctx).await),
        ("GET", "/ui/live/network", _) => html(StatusCode::OK, pages::network_live(&ctx)),
        ("GET", "/ui/live/shares", _) => html(StatusCode::OK, pages::shares_live(&ctx)),
        ("POST", p, Some(form)) => {
            if !session.may_write() {
                tracing::warn!(%peer, %path, user = %session.identity.name, role = %session.identity.role, "web UI: action refused: role lacks access");
                return html(
                    StatusCode::FORBIDDEN,
                    pages::message(
                        app,
                        "Not allowed",
                        &format!(
                            "`{}` has role {}, which may only look. Nothing was changed.",
                            session.identity.name, session.identity.role
                        ),
                    ),
                );
            }
            let who = format!("web UI user `{}`", session.identity.name);
            if let Some(name) = p
                .strip_prefix("/ui/plugins/")
                .and_then(|r| r.strip_suffix("/rollback"))
            {
                let outcome = match app.slot(name) {
                    Some(slot) => slot
                        .rollback(&format!("{who} request"))
                        .map_err(|e| e.to_string()),
                    None => Err(format!("no running plugin `{name}`")),
                };
                ui.flash_outcome(
                    &sid,
                    outcome.map(|()| format!("`{name}` rolled back to its previous version")),
                    &format!("`{name}` was not rolled back"),
                );
                redirect("/ui/plugins")
            } else if let Some(name) = p
                .strip_prefix("/ui/plugins/")
                .and_then(|r| r.strip_suffix("/restart"))
            {
                let outcome = app.restart_plugin(name, &who).await;
                ui.flash_outcome(
                    &sid,
                    outcome
                        .map(|()| format!("`{name}` restarted"))
                        .map_err(|e| e.to_string()),
                    &format!("`{name}` was not restarted"),
                );
                redirect("/ui/plugins")
            } else if p == "/ui/power/restart" {
                if form.get("confirm").map(String::as_str) != Some("restart") {
                    ui.set_flash(&sid, false, "tick the confirmation box to restart the host");
                    return redirect("/ui/power");
                }
                app.request_restart_soon(who.clone());
                html(StatusCode::ACCEPTED, pages::restarting(app))
            } else {
                html(
                    StatusCode::NOT_FOUND,
                    pages::message(app, "Not found", &format!("no action {p}")),
                )
            }
        }
        _ => html(
            StatusCode::NOT_FOUND,
            pages::message(app, "Not found", &format!("no page {path}")),
        ),
    }
}

async fn login(
    ui: &Arc<WebUi>,
    app: &Arc<Appliance>,
    verify: &(dyn Fn(&str) -> Option<Identity> + Sync),
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    if let Err(why) = same_origin(&req) {
        return html(
            StatusCode::FORBIDDEN,
            pages::message(app, "Refused", &format!("{why}.")),
        );
    }
    if ui.locked_out(peer.ip()) {
        tracing::warn!(%peer, "web UI: login refused: too many failures");
        return html(
            StatusCode::TOO_MANY_REQUESTS,
            pages::login(
                app,
                None,
                Some("Too many failed logins from this address; wait five minutes."),
            ),
        );
    }
    let next = req
        .uri()
        .query()
        .and_then(|q| parse_form(q.as_bytes()).remove("next"))
        .filter(|n| {
            n.starts_with("/ui/") && !n.starts_with("//") && !n.contains(['\\', '\r', '\n'])
        })
        .unwrap_or_else(|| "/ui/".into());
    let form = match crate::api::read_body(req, MAX_FORM_BYTES).await {
        Ok(body) => parse_form(&body),
        Err(resp) => return resp,
    };
    let field = |k: &str| form.get(k).map(|s| s.trim()).unwrap_or("");
    let outcome: Result<(Identity, bool, bool), String> = if !field("token").is_empty() {
        match verify(field("token")) {
            Some(id) if id.role == Role::Ingest => Err(
                "ingest tokens may only post to /v1/ingest; use a viewer or operator token".into(),
            ),
            Some(id) => Ok((id, false, false)),
            None => Err("wrong user, password or token".into()),
        }
    } else {
        match &ui.password {
            Err(e) => Err(format!("password login is off: {e}")),
            Ok(store) if field("user") == UI_ADMIN_USER || field("user").is_empty() => {
                // Argon2 takes tens of milliseconds: off the async workers.
                let (store, given) = (
                    store.clone(),
                    form.get("password").cloned().unwrap_or_default(),
                );
                let checked = match tokio::task::spawn_blocking(move || store.check(&given)).await {
                    Ok(r) => r.map_err(|e| format!("password store unreadable: {e}")),
                    Err(e) => Err(format!("password check failed: {e}")),
                };
                match checked {
                    Ok(PasswordCheck::Right { must_change }) => Ok((
                        Identity {
                            name: UI_ADMIN_USER.into(),
                            role: Role::Operator,
                        },
                        must_change,
                        true,
                    )),
                    Ok(PasswordCheck::Wrong) => Err("wrong user, password or token".into()),
                    Err(e) => Err(e),
                }
            }
            Ok(_) => Err("wrong user, password or token".into()),
        }
    };
    match outcome {
        Ok((identity, must_change, via_password)) => {
            tracing::info!(%peer, user = %identity.name, role = %identity.role, "web UI login");
            match ui.open_session(identity, must_change, via_password) {
                Ok(id) => {
                    let mut resp = redirect(if must_change { "/ui/password" } else { &next });
                    resp.headers_mut()
                        .insert(SET_COOKIE, ui.session_cookie(&id, MAX_SESSION.as_secs()));
                    resp
                }
                Err(e) => html(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    pages::login(app, None, Some(&e)),
                ),
            }
        }
        Err(reason) => {
            ui.record_failure(peer.ip());
            tracing::warn!(%peer, reason, "web UI login failed");
            html(
                StatusCode::UNAUTHORIZED,
                pages::login(app, None, Some(&reason)),
            )
        }
    }
}

fn change_password(
    ui: &Arc<WebUi>,
    sid: &str,
    ctx: &pages::Ctx<'_>,
    form: &HashMap<String, String>,
) -> Response<Body> {
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let store = match &ui.password {
        Ok(s) => s,
        Err(e) => {
            return html(
                StatusCode::CONFLICT,
                pages::password(ctx, Some(&format!("password login is off: {e}"))),
            );
        }
    };
    if !ctx.session.via_password {
        return html(
            StatusCode::FORBIDDEN,
            pages::password(
                ctx,
                Some("log in with the administrator password to change it"),
            ),
        );
    }
    if get("new") != get("repeat") {
        return html(
            StatusCode::BAD_REQUEST,
            pages::password(ctx, Some("the two new passwords differ")),
        );
    }
    match store.change(get("current"), get("new")) {
        Ok(()) => {
            if let Some(s) = lock(&ui.sessions).get_mut(sid) {
                s.must_change = false;
                s.flash = Some((true, "password changed".into()));
            }
            // Every other session of the administrator ends: the old password opened them.
            lock(&ui.sessions).retain(|id, s| id == sid || !s.via_password);
            redirect("/ui/")
        }
        Err(e) => html(
            StatusCode::BAD_REQUEST,
            pages::password(ctx, Some(&e.to_string())),
        ),
    }
}

/// Refuses a POST that says it came from another site.
fn same_origin(req: &Request<Incoming>) -> Result<(), String> {
    let headers = req.headers();
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return Err(format!(
            "the request came from another site (Sec-Fetch-Site: {site})"
        ));
    }
    if let Some(origin) = headers.get("origin").and_then(|v| v.to_str().ok()) {
        let host = headers
            .get("host")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let expected = origin.split_once("://").map(|(_, rest)| rest);
        if expected != Some(host) || host.is_empty() {
            return Err(format!("the request came from another origin ({origin})"));
        }
    }
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn cookie(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.headers()
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// `application/x-www-form-urlencoded` pairs; later keys win.
fn parse_form(body: &[u8]) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                String::from_utf8_lossy(&crate::api::percent_decode_bytes(&s.replace('+', " ")))
                    .into_owned()
            };
            (decode(k), decode(v))
        })
        .collect()
}

fn html(status: StatusCode, body: String) -> Response<Body> {
    crate::api::respond(status, "text/html; charset=utf-8", body)
}

fn redirect(to: &str) -> Response<Body> {
    let mut resp = crate::api::respond(StatusCode::SEE_OTHER, "text/plain", "");
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(LOCATION, v);
    }
    resp
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_are_decoded_and_csrf_tokens_compare_whole() {
        let form = parse_form(b"csrf=a%2Bb&user=admin&password=p+w%26x");
        assert_eq!(form["csrf"], "a+b");
        assert_eq!(form["password"], "p w&x");
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd") && !constant_time_eq(b"abc", b"ab"));
    }
}
