//! NFSv3 target (placeholder until the user-space client lands).
use super::{DriverError, DriverErrorKind};
use std::collections::BTreeMap;

#[derive(Debug)]
pub struct NfsDriver;

impl NfsDriver {
    pub async fn connect(
        _server: &str,
        _path: &str,
        _options: &BTreeMap<String, String>,
    ) -> Result<Self, DriverError> {
        Err(DriverError::new(
            DriverErrorKind::Other,
            "nfs targets are not supported yet",
        ))
    }
}
impl super::Driver for NfsDriver {
    fn read<'a>(&'a self, p: &'a str) -> super::DriverFuture<'a, Vec<u8>> {
        Box::pin(async move { Err(DriverError::not_found(p)) })
    }
    fn write<'a>(&'a self, p: &'a str, _d: Vec<u8>) -> super::DriverFuture<'a, ()> {
        Box::pin(async move { Err(DriverError::not_found(p)) })
    }
    fn modified<'a>(
        &'a self,
        _p: &'a str,
    ) -> super::DriverFuture<'a, Option<std::time::SystemTime>> {
        Box::pin(async move { Ok(None) })
    }
    fn list<'a>(&'a self, _p: &'a str) -> super::DriverFuture<'a, Vec<super::Entry>> {
        Box::pin(async move { Ok(vec![]) })
    }
    fn list_recursive<'a>(&'a self, _p: &'a str) -> super::DriverFuture<'a, Vec<String>> {
        Box::pin(async move { Ok(vec![]) })
    }
    fn delete<'a>(&'a self, _p: &'a str) -> super::DriverFuture<'a, ()> {
        Box::pin(async move { Ok(()) })
    }
    fn delete_tree<'a>(&'a self, _p: &'a str) -> super::DriverFuture<'a, ()> {
        Box::pin(async move { Ok(()) })
    }
}
