//! The simulated network: the default media backend and the sandbox users try flows
//! in. Deterministic: what happens to a call depends only on its destination and the
//! configured delays.
//!
//! | destination | behaviour |
//! |---|---|
//! | `+15005550001` | rings, then is busy (the callee declines): ends `busy`, never answered |
//! | `+15005550002` | rings until the caller's dial timeout (ends `noanswer`) |
//! | `+15005550003` | fails at once (`failed`) |
//! | `+15005550004` | answers, the far end hangs up 2 s later (`normal`, remote) |
//! | `+15005550005` | answers, then sends the DTMF digits `1234#` 500 ms later |
//! | anything else | rings after `ring_delay`, answers after `answer_delay`, stays up |

use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;
use callplane_schema::ids::CallId;
use callplane_schema::models::address::{Address, AddressType};
use callplane_schema::models::call::{HangupReason, MuteDirection};

use super::{MediaBackend, MediaError, MediaEvent, MediaEventKind as Kind};

pub const BUSY: &str = "+15005550001";
pub const NO_ANSWER: &str = "+15005550002";
pub const FAILS: &str = "+15005550003";
pub const REMOTE_HANGUP: &str = "+15005550004";
pub const SENDS_DIGITS: &str = "+15005550005";

/// How long `+15005550001` rings before it declines.
const BUSY_AFTER_RINGING: Duration = Duration::from_millis(50);
/// How long the far end of `+15005550004` stays before hanging up.
const REMOTE_HANGUP_AFTER: Duration = Duration::from_secs(2);
/// When `+15005550005` sends its digits, after answering.
const DIGITS_AFTER: Duration = Duration::from_millis(500);
const DIGITS: &str = "1234#";
/// Simulated speech: this long per word.
const SPEECH_PER_WORD: Duration = Duration::from_millis(20);
/// Simulated audio files: this long per URL.
const PLAY_PER_URL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy)]
pub struct SimSettings {
    pub ring_delay: Duration,
    pub answer_delay: Duration,
}

impl Default for SimSettings {
    fn default() -> Self {
        SimSettings { ring_delay: Duration::from_millis(100), answer_delay: Duration::from_millis(1000) }
    }
}

/// The backend handle given to call actors: forwards to the [`SimActor`].
#[derive(Clone)]
pub struct SimNetwork {
    actor: Addr<SimActor>,
}

impl SimNetwork {
    pub fn start(settings: SimSettings) -> SimNetwork {
        SimNetwork { actor: SimActor { settings, calls: HashMap::new() }.start() }
    }
}

impl MediaBackend for SimNetwork {
    fn name(&self) -> &'static str {
        "simulated"
    }

    fn dial(&self, call: &CallId, _source: &Address, destination: &Address, events: Recipient<MediaEvent>) {
        self.actor.do_send(Dial { call: call.clone(), destination: destination.clone(), events });
    }

    fn accept_incoming(&self, call: &CallId, events: Recipient<MediaEvent>) {
        self.actor.do_send(Register { call: call.clone(), events });
    }

    fn reattach(&self, _call: &CallId, _events: Recipient<MediaEvent>) -> bool {
        // The simulation lives in memory: after a restart it has no calls to give back.
        false
    }

    fn answer(&self, call: &CallId) -> Result<(), MediaError> {
        self.actor.do_send(Answer { call: call.clone() });
        Ok(())
    }

    fn hangup(&self, call: &CallId, reason: HangupReason) {
        self.actor.do_send(Hangup { call: call.clone(), reason });
    }

    fn talk(&self, call: &CallId, text: &str, _language: &str) -> Result<u64, MediaError> {
        let words = text.split_whitespace().count().max(1) as u32;
        Ok(self.play_for(call, SPEECH_PER_WORD * words))
    }

    fn play(&self, call: &CallId, urls: &[String]) -> Result<u64, MediaError> {
        Ok(self.play_for(call, PLAY_PER_URL * urls.len().max(1) as u32))
    }

    fn stop_playback(&self, call: &CallId) {
        self.actor.do_send(StopPlayback { call: call.clone() });
    }

    fn hold(&self, _call: &CallId, _on: bool) -> Result<(), MediaError> {
        Ok(())
    }

    fn mute(&self, _call: &CallId, _direction: MuteDirection, _on: bool) -> Result<(), MediaError> {
        Ok(())
    }

    fn send_digits(&self, call: &CallId, digits: &str) -> Result<(), MediaError> {
        log::debug!("call {call}: sent DTMF {digits:?} into the simulated network");
        Ok(())
    }

    fn bridge(&self, a: &CallId, b: &CallId) -> Result<(), MediaError> {
        log::debug!("simulated network: bridged {a} and {b}");
        Ok(())
    }

    fn unbridge(&self, call: &CallId) {
        log::debug!("simulated network: unbridged {call}");
    }
}

impl SimNetwork {
    fn play_for(&self, call: &CallId, duration: Duration) -> u64 {
        // Ids only need to be unique per call; a process-wide counter is simplest.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let playback = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.actor.do_send(Play { call: call.clone(), playback, duration });
        playback
    }
}

/// What the far end does once the call is answered.
#[derive(Clone, Copy)]
enum AfterAnswer {
    Stay,
    HangUp,
    SendDigits,
}

struct SimCall {
    events: Recipient<MediaEvent>,
    after_answer: AfterAnswer,
    /// Pending far-end behaviour, cancelled when the call is hung up locally.
    timers: Vec<SpawnHandle>,
    /// What is playing: its timer and id.
    playback: Option<(SpawnHandle, u64)>,
    answered: bool,
}

/// Holds the simulated far ends and their timers.
pub struct SimActor {
    settings: SimSettings,
    calls: HashMap<CallId, SimCall>,
}

impl Actor for SimActor {
    type Context = Context<Self>;
}

impl SimActor {
    fn send(&mut self, ctx: &mut Context<Self>, call: &CallId, kind: Kind) {
        let Some(sim) = self.calls.get_mut(call) else { return };
        let gone = matches!(kind, Kind::HungUp { .. });
        let answered = kind == Kind::Answered && !sim.answered;
        sim.answered |= answered;
        let after_answer = sim.after_answer;
        // A call actor that is gone has nothing left to hear.
        sim.events.do_send(MediaEvent::now(kind));
        if gone {
            self.calls.remove(call);
        } else if answered {
            // Timed from the answer as it happened, so the far end keeps its 2 s exactly.
            match after_answer {
                AfterAnswer::Stay => {}
                AfterAnswer::HangUp => {
                    let hangup = Kind::HungUp { reason: HangupReason::Normal, remote: true };
                    self.later(ctx, call, REMOTE_HANGUP_AFTER, hangup);
                }
                AfterAnswer::SendDigits => {
                    // One timer for all of them: timers due at the same instant fire
                    // in no particular order, and the digits must arrive in theirs.
                    let id = call.clone();
                    let handle = ctx.run_later(DIGITS_AFTER, move |act, ctx| {
                        for digit in DIGITS.chars() {
                            act.send(ctx, &id, Kind::Digit(digit));
                        }
                    });
                    if let Some(sim) = self.calls.get_mut(call) {
                        sim.timers.push(handle);
                    }
                }
            }
        }
    }

    fn later(&mut self, ctx: &mut Context<Self>, call: &CallId, after: Duration, kind: Kind) {
        let id = call.clone();
        let handle = ctx.run_later(after, move |act, ctx| act.send(ctx, &id, kind));
        if let Some(sim) = self.calls.get_mut(call) {
            sim.timers.push(handle);
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Dial {
    call: CallId,
    destination: Address,
    events: Recipient<MediaEvent>,
}

impl Handler<Dial> for SimActor {
    type Result = ();

    fn handle(&mut self, msg: Dial, ctx: &mut Context<Self>) {
        let Dial { call, destination, events } = msg;
        let number = (destination.kind == AddressType::Tel).then_some(destination.target.as_str());
        let after_answer = match number {
            Some(REMOTE_HANGUP) => AfterAnswer::HangUp,
            Some(SENDS_DIGITS) => AfterAnswer::SendDigits,
            _ => AfterAnswer::Stay,
        };
        let sim = SimCall { events, after_answer, timers: Vec::new(), playback: None, answered: false };
        self.calls.insert(call.clone(), sim);
        let SimSettings { ring_delay, answer_delay } = self.settings;
        match number {
            Some(FAILS) => self.send(ctx, &call, Kind::HungUp { reason: HangupReason::Failed, remote: true }),
            Some(BUSY) => {
                self.later(ctx, &call, ring_delay, Kind::Ringing);
                let busy = Kind::HungUp { reason: HangupReason::Busy, remote: true };
                self.later(ctx, &call, ring_delay + BUSY_AFTER_RINGING, busy);
            }
            Some(NO_ANSWER) => self.later(ctx, &call, ring_delay, Kind::Ringing),
            _ => {
                if ring_delay < answer_delay {
                    self.later(ctx, &call, ring_delay, Kind::Ringing);
                }
                self.later(ctx, &call, answer_delay, Kind::Answered);
            }
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Register {
    call: CallId,
    events: Recipient<MediaEvent>,
}

impl Handler<Register> for SimActor {
    type Result = ();

    fn handle(&mut self, msg: Register, _: &mut Context<Self>) {
        self.calls.insert(
            msg.call,
            SimCall {
                events: msg.events,
                after_answer: AfterAnswer::Stay,
                timers: Vec::new(),
                playback: None,
                answered: false,
            },
        );
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Answer {
    call: CallId,
}

impl Handler<Answer> for SimActor {
    type Result = ();

    fn handle(&mut self, msg: Answer, ctx: &mut Context<Self>) {
        if self.calls.get(&msg.call).is_some_and(|c| !c.answered) {
            self.send(ctx, &msg.call, Kind::Answered);
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Hangup {
    call: CallId,
    reason: HangupReason,
}

impl Handler<Hangup> for SimActor {
    type Result = ();

    fn handle(&mut self, msg: Hangup, ctx: &mut Context<Self>) {
        if let Some(sim) = self.calls.get_mut(&msg.call) {
            for timer in sim.timers.drain(..).chain(sim.playback.take().map(|(timer, _)| timer)) {
                ctx.cancel_future(timer);
            }
        }
        self.send(ctx, &msg.call, Kind::HungUp { reason: msg.reason, remote: false });
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Play {
    call: CallId,
    playback: u64,
    duration: Duration,
}

impl Handler<Play> for SimActor {
    type Result = ();

    fn handle(&mut self, msg: Play, ctx: &mut Context<Self>) {
        let Play { call, playback, duration } = msg;
        let id = call.clone();
        let handle = ctx.run_later(duration, move |act, ctx| {
            if let Some(sim) = act.calls.get_mut(&id) {
                sim.playback = None;
            }
            act.send(ctx, &id, Kind::PlaybackFinished { playback });
        });
        if let Some((previous, cut)) =
            self.calls.get_mut(&call).and_then(|sim| sim.playback.replace((handle, playback)))
        {
            // A playback cut short is over too: whoever waits for its end hears of it.
            ctx.cancel_future(previous);
            self.send(ctx, &call, Kind::PlaybackFinished { playback: cut });
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct StopPlayback {
    call: CallId,
}

impl Handler<StopPlayback> for SimActor {
    type Result = ();

    fn handle(&mut self, msg: StopPlayback, ctx: &mut Context<Self>) {
        if let Some((handle, playback)) = self.calls.get_mut(&msg.call).and_then(|sim| sim.playback.take()) {
            ctx.cancel_future(handle);
            self.send(ctx, &msg.call, Kind::PlaybackFinished { playback });
        }
    }
}
