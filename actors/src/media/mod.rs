//! Media backends: what turns a call actor's intentions into signalling and audio, and
//! reports back what the far end did.
//!
//! A call actor drives its call through [`MediaBackend`] and receives [`MediaEvent`]s on
//! the recipient it registered at `dial`/`attach`. Commands return at once; what they
//! cause arrives later as events, as it would from a SIP stack. The simulated network
//! ([`sim::SimNetwork`]) is the default; a SIP backend implements the same trait.

pub mod sim;

use actix::prelude::*;
use callplane_schema::ids::CallId;
use callplane_schema::models::address::Address;
use callplane_schema::models::call::{HangupReason, MuteDirection};
use chrono::NaiveDateTime;

/// What the far end (or the network) did, and when.
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct MediaEvent {
    /// When it happened at the backend: the call's timestamps (and so its duration
    /// and its bill) come from here, not from when the actor got round to it.
    pub at: NaiveDateTime,
    pub kind: MediaEventKind,
}

impl MediaEvent {
    pub fn now(kind: MediaEventKind) -> MediaEvent {
        MediaEvent { at: callplane_schema::time::now(), kind }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEventKind {
    /// The destination is alerting.
    Ringing,
    /// The call was answered (outgoing) or our answer took effect (incoming).
    Answered,
    /// The call is gone. `remote` tells whether the far end or the network ended it
    /// rather than confirming our own hang-up.
    HungUp { reason: HangupReason, remote: bool },
    /// A DTMF digit arrived.
    Digit(char),
    /// A `talk` or `play` finished playing (id as returned by the command).
    PlaybackFinished { playback: u64 },
}

/// A media command could not be carried out.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MediaError {
    #[error("the media backend does not know call {0}")]
    UnknownCall(CallId),
    #[error("media backend: {0}")]
    Failed(String),
}

/// A new call arriving from the network, for the call manager to route.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct IncomingCall {
    pub source: Address,
    pub destination: Address,
}

pub trait MediaBackend: Send + Sync + 'static {
    fn name(&self) -> &'static str;

    /// Places an outgoing call; its progress arrives at `events`.
    fn dial(&self, call: &CallId, source: &Address, destination: &Address, events: Recipient<MediaEvent>);

    /// Takes a new incoming call (not yet answered); its events arrive at `events`.
    fn accept_incoming(&self, call: &CallId, events: Recipient<MediaEvent>);

    /// After a restart: binds a call the backend still carries to a new actor. False
    /// if the backend no longer has it (the call is then ended as `failed`).
    fn reattach(&self, call: &CallId, events: Recipient<MediaEvent>) -> bool;

    /// Answers an incoming call; `Answered` follows.
    fn answer(&self, call: &CallId) -> Result<(), MediaError>;

    /// Ends the call; `HungUp { remote: false }` follows.
    fn hangup(&self, call: &CallId, reason: HangupReason);

    /// Speaks `text`; returns the playback id that `PlaybackFinished` will carry.
    fn talk(&self, call: &CallId, text: &str, language: &str) -> Result<u64, MediaError>;

    /// Plays audio from URLs; returns the playback id.
    fn play(&self, call: &CallId, urls: &[String]) -> Result<u64, MediaError>;

    /// Stops whatever is playing on the call.
    fn stop_playback(&self, call: &CallId);

    fn hold(&self, call: &CallId, on: bool) -> Result<(), MediaError>;

    fn mute(&self, call: &CallId, direction: MuteDirection, on: bool) -> Result<(), MediaError>;

    fn send_digits(&self, call: &CallId, digits: &str) -> Result<(), MediaError>;

    /// Connects the audio of two calls (a `connect` flow action, a two-party conference).
    fn bridge(&self, a: &CallId, b: &CallId) -> Result<(), MediaError>;

    /// Undoes [`MediaBackend::bridge`] for this call.
    fn unbridge(&self, call: &CallId);
}
