//! A request to one of the APIs, described as data: method, path, JSON body, how long it may
//! take, and (as a type parameter) what the answer parses into. The catalogues
//! ([`crate::manager_api`], [`crate::node_api`]) build them; a transport sends them.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// How long a call may take before the caller gives up; the transport sets the durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// A quick look (observing a node): a slow answer means the peer is in trouble.
    Short,
    /// Most calls.
    Normal,
    /// Work that takes as long as the data takes (rebuilds, trims, reverts).
    Long,
}

/// One call, answered by an `R` (`()` for an empty answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<R> {
    pub method: Method,
    /// The path and query, starting with `/`; names in it are percent-encoded.
    pub path: String,
    /// The JSON body, when there is one.
    pub body: Option<Vec<u8>>,
    pub timeout: Timeout,
    answer: PhantomData<fn() -> R>,
}

impl<R: DeserializeOwned> Request<R> {
    pub fn new(method: Method, path: String) -> Request<R> {
        Request {
            method,
            path,
            body: None,
            timeout: Timeout::Normal,
            answer: PhantomData,
        }
    }

    pub fn get(path: String) -> Request<R> {
        Request::new(Method::Get, path)
    }

    pub fn post(path: String) -> Request<R> {
        Request::new(Method::Post, path)
    }

    pub fn put(path: String) -> Request<R> {
        Request::new(Method::Put, path)
    }

    pub fn patch(path: String) -> Request<R> {
        Request::new(Method::Patch, path)
    }

    pub fn delete(path: String) -> Request<R> {
        Request::new(Method::Delete, path)
    }

    /// With `body` as its JSON body. The API's bodies are structs with string keys, which
    /// always encode; a value that does not is sent as JSON `null`, which servers refuse.
    pub fn json(mut self, body: &impl Serialize) -> Request<R> {
        self.body = Some(serde_json::to_vec(body).unwrap_or_else(|_| b"null".to_vec()));
        self
    }

    pub fn timeout(mut self, timeout: Timeout) -> Request<R> {
        self.timeout = timeout;
        self
    }

    /// Parses an answer's body: an empty one reads as JSON `null` (so `()` and `Option`s
    /// take it).
    pub fn parse_answer(&self, body: &[u8]) -> Result<R, serde_json::Error> {
        if body.iter().all(u8::is_ascii_whitespace) {
            serde_json::from_slice(b"null")
        } else {
            serde_json::from_slice(body)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_empty_answer_is_unit() {
        let request: Request<()> = Request::post("/x".into());
        request.parse_answer(b"").unwrap();
        request.parse_answer(b" \n").unwrap();
    }

    #[test]
    fn a_body_is_json() {
        let request: Request<u64> = Request::put("/x".into()).json(&serde_json::json!({"a": 1}));
        assert_eq!(request.body.as_deref(), Some(&br#"{"a":1}"#[..]));
        assert_eq!(request.parse_answer(b"7").unwrap(), 7);
        assert!(request.parse_answer(b"\"seven\"").is_err());
    }
}
