//! `txpool_` namespace: what waits in the pool, as geth shows it.

use std::collections::BTreeMap;

use alloy_consensus::Transaction as _;
use alloy_primitives::Address;
use serde_json::{json, Map, Value};

use super::convert;
use super::error::{RpcError, RpcResult};
use super::params::Params;
use super::RpcContext;
use crate::txpool::PoolContent;

fn content(ctx: &RpcContext) -> PoolContent {
    let chain = &ctx.chain;
    chain.pool().content(|a| chain.account_nonce(a))
}

type Section = BTreeMap<Address, BTreeMap<u64, std::sync::Arc<crate::primitives::RecoveredTx>>>;

fn render(section: &Section, f: impl Fn(&crate::primitives::RecoveredTx) -> Value) -> Value {
    let mut out = Map::new();
    for (sender, txs) in section {
        let mut by_nonce = Map::new();
        for (nonce, tx) in txs {
            by_nonce.insert(nonce.to_string(), f(tx));
        }
        out.insert(sender.to_checksum(None), Value::Object(by_nonce));
    }
    Value::Object(out)
}

fn summary(tx: &crate::primitives::RecoveredTx) -> Value {
    let t = tx.inner();
    let to = t.to().map_or("contract creation".to_string(), |a| a.to_checksum(None));
    Value::String(format!("{to}: {} wei + {} gas × {} wei", t.value(), t.gas_limit(), t.max_fee_per_gas()))
}

/// Handles `txpool_*` methods.
pub fn call(ctx: &RpcContext, method: &str, p: Params) -> RpcResult {
    match method {
        "txpool_status" => {
            p.at_most(0)?;
            let c = content(ctx);
            let count = |s: &Section| s.values().map(|m| m.len()).sum::<usize>();
            Ok(
                json!({"pending": format!("{:#x}", count(&c.pending)), "queued": format!("{:#x}", count(&c.queued))}),
            )
        }
        "txpool_content" => {
            p.at_most(0)?;
            let c = content(ctx);
            let full = |t: &crate::primitives::RecoveredTx| json!(convert::pending_transaction(t));
            Ok(json!({"pending": render(&c.pending, full), "queued": render(&c.queued, full)}))
        }
        "txpool_contentFrom" => {
            p.at_most(1)?;
            let from: Address = p.req(0)?;
            let c = content(ctx);
            let full = |t: &crate::primitives::RecoveredTx| json!(convert::pending_transaction(t));
            let pick = |s: &Section| {
                let mut m = Section::new();
                if let Some(v) = s.get(&from) {
                    m.insert(from, v.clone());
                }
                m
            };
            let pending = render(&pick(&c.pending), full);
            let queued = render(&pick(&c.queued), full);
            let inner =
                |v: Value| v.as_object().and_then(|o| o.values().next().cloned()).unwrap_or(json!({}));
            Ok(json!({"pending": inner(pending), "queued": inner(queued)}))
        }
        "txpool_inspect" => {
            p.at_most(0)?;
            let c = content(ctx);
            Ok(json!({"pending": render(&c.pending, summary), "queued": render(&c.queued, summary)}))
        }
        _ => Err(RpcError::method_not_found(method)),
    }
}
