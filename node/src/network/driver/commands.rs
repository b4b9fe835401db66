//! Commands to the swarm task: sync requests, verdicts of validation workers, admin actions.

use super::Driver;
use crate::network::Command;

impl Driver {
    /// Carries out one command.
    pub(super) fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Request { peer, request, reply } => {
                let id = self.p.swarm.behaviour_mut().sync.send_request(&peer, request);
                self.pending.insert(id, reply);
            }
            Command::Validated { id, peer, acceptance, offence, republish } => {
                self.p
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&id, &peer, acceptance);
                if let Some(o) = offence {
                    self.punish(peer, o);
                }
                for hash in republish {
                    self.queue_tx(&hash);
                }
            }
            Command::Defer { id, peer, block } => self.defer(id, peer, block),
            Command::GivePool { peer, batches } => self.send_pool(peer, batches),
            Command::Punish { peer, offence } => self.punish(peer, offence),
            Command::Block(peer) => {
                self.book.block(peer);
                self.p.swarm.behaviour_mut().blocked.block_peer(peer);
                let _ = self.p.swarm.disconnect_peer_id(peer);
            }
            Command::Unblock(peer) => {
                if self.book.unblock(&peer) {
                    self.p.swarm.behaviour_mut().blocked.unblock_peer(peer);
                }
                self.redial(true);
            }
            Command::BroadcastRawBlock(bytes) => {
                let topic = self.blocks_topic.clone();
                // The bytes go out as a whole block's message, decodable or not.
                let message = [&[crate::network::compact::FULL][..], &bytes].concat();
                if let Err(e) = self.p.swarm.behaviour_mut().gossipsub.publish(topic, message) {
                    tracing::warn!(error = %e, "admin broadcast failed");
                }
            }
            Command::Scores(reply) => {
                let connected: Vec<_> = self.p.peers.lock().iter().copied().collect();
                let _ = reply.send(connected.into_iter().map(|p| (p, self.book.score(&p))).collect());
            }
        }
    }
}
