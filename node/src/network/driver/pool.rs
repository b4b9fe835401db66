//! Pool announcements: when a peer connects, this node gives it its pool over the pool
//! request/response protocol, to that peer alone (gossiping the pool again would send every
//! transaction to every peer each time one connects). What a peer gives us is validated on a
//! blocking worker; the transactions new to us then spread as any new transaction does.

use std::time::Instant;

use alloy_consensus::Transaction as _;
use alloy_eips::eip2718::Encodable2718;
use libp2p::request_response::{self, ResponseChannel};
use libp2p::PeerId;

use super::Driver;
use crate::blockchain::Blockchain;
use crate::network::peers::Offence;
use crate::network::protocol::{PoolAck, PoolBatch};
use crate::network::txgossip::{accept_batch, decode_batch, Batcher};
use crate::network::Command;

impl Driver {
    /// Sends our pool to `peer` (only): the batches are made on a blocking worker (a pool may
    /// hold 128 MiB) and sent by [`Driver::send_pool`].
    pub(super) fn announce_pool_to(&mut self, peer: PeerId) {
        if self.p.chain.pool().is_empty() {
            return;
        }
        let (chain, cmd) = (self.p.chain.clone(), self.p.cmd_tx.clone());
        tokio::task::spawn_blocking(move || {
            let batches = pool_batches(&chain);
            if !batches.is_empty() {
                let _ = cmd.blocking_send(Command::GivePool { peer, batches });
            }
        });
    }

    /// Sends pool batches to `peer`.
    pub(super) fn send_pool(&mut self, peer: PeerId, batches: Vec<Vec<u8>>) {
        tracing::debug!(%peer, batches = batches.len(), "pool given to a new peer");
        for batch in batches {
            self.p.swarm.behaviour_mut().pool.send_request(&peer, PoolBatch(batch));
        }
    }

    /// Events of the pool protocol.
    pub(super) fn on_pool_event(&mut self, ev: request_response::Event<PoolBatch, PoolAck>) {
        match ev {
            request_response::Event::Message {
                peer,
                message: request_response::Message::Request { request, channel, .. },
                ..
            } => self.on_pool_batch(peer, request, channel),
            request_response::Event::Message {
                peer,
                message: request_response::Message::Response { response: PoolAck::Refused(why), .. },
                ..
            } => tracing::debug!(%peer, why, "peer refused our pool"),
            request_response::Event::OutboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "giving our pool to a peer failed");
            }
            _ => {}
        }
    }

    fn on_pool_batch(&mut self, peer: PeerId, batch: PoolBatch, channel: ResponseChannel<PoolAck>) {
        if !self.book.admits(&peer) {
            return;
        }
        if let Some(why) = self.over_limit(peer, true, 1.0) {
            let _ = self.p.swarm.behaviour_mut().pool.send_response(channel, PoolAck::Refused(why));
            return;
        }
        self.pool_limit.charge(peer, batch.0.len(), Instant::now());
        let _ = self.p.swarm.behaviour_mut().pool.send_response(channel, PoolAck::Received);
        match decode_batch(&batch.0) {
            Ok(txs) => {
                let (chain, cmd) = (self.p.chain.clone(), self.p.cmd_tx.clone());
                tokio::task::spawn_blocking(move || {
                    if let Some(offence) = accept_batch(&chain, &txs).offence {
                        let _ = cmd.blocking_send(Command::Punish { peer, offence });
                    }
                });
            }
            Err(e) => {
                tracing::debug!(%peer, error = %e, "garbage pool announcement");
                self.punish(peer, Offence::Garbage);
            }
        }
    }
}

/// The pool as transaction batches, each sender's transactions in nonce order.
fn pool_batches(chain: &Blockchain) -> Vec<Vec<u8>> {
    let pool = chain.pool();
    let mut txs: Vec<_> = pool.hashes().iter().filter_map(|h| pool.get(h)).collect();
    txs.sort_by_key(|tx| (tx.signer(), tx.inner().nonce()));
    let mut batcher = Batcher::default();
    let mut batches = Vec::new();
    for tx in &txs {
        if batcher.push(tx.inner().encoded_2718().into()) {
            batches.push(batcher.take_message());
        }
    }
    if !batcher.is_empty() {
        batches.push(batcher.take_message());
    }
    batches
}
