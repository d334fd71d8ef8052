//! A `wasi:http/proxy` handler: answers `200 OK` with a greeting naming the method and path it
//! saw, and `404` for paths under `/missing`.

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Hello;

impl Guest for Hello {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_else(|| "/".to_string());
        let method = match request.method() {
            Method::Get => "GET".to_string(),
            Method::Post => "POST".to_string(),
            Method::Put => "PUT".to_string(),
            Method::Delete => "DELETE".to_string(),
            Method::Other(other) => other,
            other => format!("{other:?}").to_uppercase(),
        };
        let (status, text) = if path.starts_with("/missing") {
            (404, format!("no such thing: {path}\n"))
        } else {
            (200, format!("hello from outpost: {method} {path}\n"))
        };
        let headers = Fields::new();
        let _ = headers.set("content-type", &[b"text/plain; charset=utf-8".to_vec()]);
        let response = OutgoingResponse::new(headers);
        let _ = response.set_status_code(status);
        let body = response.body().expect("response body is taken once");
        ResponseOutparam::set(out, Ok(response));
        let stream = body.write().expect("body stream is taken once");
        let _ = stream.blocking_write_and_flush(text.as_bytes());
        drop(stream);
        let _ = OutgoingBody::finish(body, None);
    }
}

wasip2::http::proxy::export!(Hello);
