//! `eth_createAccessList`: the accounts and slots a call touches, and its gas with that list.

use alloy_eips::eip2930::{AccessList, AccessListItem, AccessListResult};
use alloy_eips::BlockId;
use alloy_primitives::{Address, U256};
use alloy_rpc_types_eth::TransactionRequest;
use serde_json::json;

use super::super::error::RpcResult;
use super::super::params::Params;
use super::super::workers::Work;
use super::super::RpcContext;
use super::call::{call_env, request_tx_env, run_with, Overrides};

fn is_precompile(a: &Address) -> bool {
    let b = a.as_slice();
    b[..19].iter().all(|x| *x == 0) && (1..=0x11).contains(&b[19])
        || (b[..18].iter().all(|x| *x == 0) && b[18] == 1 && b[19] == 0)
}

/// `eth_createAccessList(request, block?)`, on a call worker.
///
/// As geth does, the call is repeated with the list found so far until the list stops
/// changing; the sender, the recipient and the coinbase appear only for their storage slots,
/// precompiles never.
pub fn create_access_list(ctx: &RpcContext, p: Params, work: &Work<'_>) -> RpcResult {
    p.at_most(2)?;
    let mut req: TransactionRequest = p.req(0)?;
    let block = ctx.resolve(p.opt::<BlockId>(1)?)?;
    let env = call_env(ctx, &block)?;
    let chain_id = ctx.chain.spec().chain_id;
    let from = req.from.unwrap_or_default();
    let to = req.to.and_then(|k| k.to().copied());
    let gas = req.gas.unwrap_or(env.gas_cap).min(env.gas_cap);
    let mut list = req.access_list.clone().unwrap_or_default();
    ctx.with_state_in(work.reads, block.number, |state| {
        for _ in 0..8 {
            req.access_list = Some(list.clone());
            let tx = request_tx_env(chain_id, &req, gas)?;
            let (result, touched) =
                run_with(ctx, state, &env.header, tx, &Overrides::default(), &work.budget)?;
            let mut items: Vec<AccessListItem> = touched
                .iter()
                .filter(|(a, acct)| {
                    // As geth: storage accesses are always listed; bare accounts only when they
                    // are not already warm (sender, recipient, precompiles, coinbase).
                    let warm =
                        **a == from || Some(**a) == to || is_precompile(a) || **a == env.header.beneficiary;
                    !is_precompile(a) && (!warm || !acct.storage.is_empty())
                })
                .map(|(a, acct)| {
                    let mut keys: Vec<_> =
                        acct.storage.keys().map(|k| alloy_primitives::B256::from(*k)).collect();
                    keys.sort();
                    AccessListItem { address: *a, storage_keys: keys }
                })
                .collect();
            items.sort_by_key(|i| i.address);
            let next = AccessList(items);
            if next == list {
                let error = (!result.is_success()).then(|| match result.output() {
                    Some(o) if !o.is_empty() => format!("execution reverted: {o}"),
                    _ => "execution failed".to_string(),
                });
                let out =
                    AccessListResult { access_list: list, gas_used: U256::from(result.tx_gas_used()), error };
                return Ok(json!(out));
            }
            list = next;
        }
        Err(super::super::error::RpcError::internal("access list did not settle after 8 rounds"))
    })
}
