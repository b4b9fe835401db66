//! Positional parameters, decoded one by one so errors name the position.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::RpcError;

/// The `params` of a request.
pub struct Params(Vec<Value>);

impl Params {
    /// Wraps a request's `params` (absent, null, or an array).
    pub fn new(v: Option<Value>) -> Result<Self, RpcError> {
        match v {
            None | Some(Value::Null) => Ok(Self(Vec::new())),
            Some(Value::Array(a)) => Ok(Self(a)),
            Some(_) => Err(RpcError::invalid_params("params must be an array")),
        }
    }

    /// Refuses more than `n` parameters.
    pub fn at_most(&self, n: usize) -> Result<(), RpcError> {
        if self.0.len() > n {
            return Err(RpcError::invalid_params(format!(
                "too many arguments, want at most {n}, got {}",
                self.0.len()
            )));
        }
        Ok(())
    }

    /// A required parameter.
    pub fn req<T: DeserializeOwned>(&self, i: usize) -> Result<T, RpcError> {
        match self.0.get(i) {
            None | Some(Value::Null) => {
                Err(RpcError::invalid_params(format!("missing value for required argument {i}")))
            }
            Some(v) => decode(i, v),
        }
    }

    /// An optional parameter.
    pub fn opt<T: DeserializeOwned>(&self, i: usize) -> Result<Option<T>, RpcError> {
        match self.0.get(i) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => decode(i, v).map(Some),
        }
    }
}

fn decode<T: DeserializeOwned>(i: usize, v: &Value) -> Result<T, RpcError> {
    T::deserialize(v).map_err(|e| RpcError::invalid_params(format!("invalid argument {i}: {e}")))
}
