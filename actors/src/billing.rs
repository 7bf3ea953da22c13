//! Billing: a durable subscriber of call events.
//!
//! `call.answered` opens a ledger row (`billing.created`); `call.ended` charges the call
//! per started unit (minute, or second when configured) from answer to end, writing the
//! ledger row and the new balance in one transaction (`billing.updated`, and
//! `billing.balance_low` when the balance falls under the threshold). Unanswered and
//! free calls cost nothing.
//!
//! Whenever a customer's answered calls or balance change, it works out when the
//! balance runs out for all of that customer's calls together and tells each call's
//! actor to end at that moment with `insufficient_balance`. The moment is the last one
//! at which every call's started units are still covered, less a margin for timer
//! jitter, so the balance does not go below zero (by more than one unit when a timer
//! fires late).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use actix::prelude::*;
use callplane_schema::ids::{CallId, CustomerId};
use callplane_schema::models::billing::{self, Billing, BillingStatus, ReferenceType};
use callplane_schema::models::billing_account;
use callplane_schema::models::call::{self, Call};
use callplane_schema::models::event::{Event, NewEvent};
use callplane_schema::{DbError, WriteCtx};
use chrono::NaiveDateTime;

use crate::bus::{Durable, DurableSubscriber};
use crate::call::{CallManager, Deadline};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BillingSettings {
    /// The unit calls are charged by: a started minute (60 s) or a started second.
    pub unit: Duration,
    /// `billing.balance_low` when a charge takes the balance under this.
    pub balance_low: i64,
    /// No call lasts longer than this (the calls' maximum duration): a balance that
    /// covers every call in progress until then needs no cut-off.
    pub horizon: Duration,
}

impl Default for BillingSettings {
    fn default() -> Self {
        BillingSettings {
            unit: Duration::from_secs(60),
            balance_low: 1_000_000,
            horizon: Duration::from_secs(4 * 3600),
        }
    }
}

/// A call being billed, as the cut-off needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Billed {
    pub call_id: CallId,
    pub answered: NaiveDateTime,
    pub rate: i64,
    /// What the call holds of the balance (its first unit, reserved at creation).
    pub reserved: i64,
}

/// The account after a change: its balance and what calls in progress hold of it.
#[derive(Debug, Clone, Copy)]
pub struct Funds {
    pub balance: i64,
    pub reserved: i64,
}

/// What a write changed, for the in-memory exposure.
#[derive(Debug)]
pub enum Change {
    Opened { customer_id: CustomerId, call: Billed, funds: Funds },
    Finished { customer_id: CustomerId, call_id: CallId, funds: Funds },
    Adjusted { customer_id: CustomerId, funds: Funds },
}

/// A customer's calls being billed, with running sums that bound their cost in O(1).
#[derive(Debug, Default)]
struct Exposure {
    funds: Option<Funds>,
    /// Σ what the answered calls hold.
    held: i64,
    calls: HashMap<CallId, Billed>,
    /// Σ rate.
    rates: i128,
    /// Σ rate × answered (microseconds since the epoch).
    weighted: i128,
    /// Deadlines were sent and must be lifted when no longer needed.
    cutting: bool,
}

impl Exposure {
    /// What the answered calls may spend: the balance less what unanswered calls hold.
    fn budget(&self) -> i64 {
        self.funds.map_or(0, |f| f.balance - f.reserved + self.held)
    }

    fn add(&mut self, call: Billed) {
        self.held += call.reserved;
        self.rates += i128::from(call.rate);
        self.weighted += i128::from(call.rate) * i128::from(call.answered.and_utc().timestamp_micros());
        self.calls.insert(call.call_id.clone(), call);
    }

    fn remove(&mut self, call_id: &CallId) {
        if let Some(call) = self.calls.remove(call_id) {
            self.held -= call.reserved;
            self.rates -= i128::from(call.rate);
            self.weighted -= i128::from(call.rate) * i128::from(call.answered.and_utc().timestamp_micros());
        }
    }

    /// True when the balance may not cover every call until `until`: an upper bound of
    /// their cost, Σ rate × (elapsed / unit + 1), from the running sums.
    fn at_risk(&self, until: NaiveDateTime, unit: Duration) -> bool {
        if self.rates == 0 {
            return false;
        }
        let unit = i128::try_from(unit.as_micros()).unwrap_or(i128::MAX).max(1);
        let t = i128::from(until.and_utc().timestamp_micros());
        let bound = (self.rates * t - self.weighted) / unit + self.rates;
        i128::from(self.budget()) < bound
    }
}

pub struct BillingSubscriber {
    calls: Addr<CallManager>,
    settings: BillingSettings,
    db: callplane_schema::Db,
    exposures: HashMap<CustomerId, Exposure>,
}

impl BillingSubscriber {
    pub fn start(
        calls: Addr<CallManager>,
        settings: BillingSettings,
        db: callplane_schema::Db,
        bus: Addr<crate::bus::EventBus>,
    ) -> Addr<Durable<BillingSubscriber>> {
        let subscriber = BillingSubscriber { calls, settings, db: db.clone(), exposures: HashMap::new() };
        Durable::start(subscriber, settings, db, bus)
    }

    /// Sends every call of `customer_id` its deadline, or lifts deadlines no longer needed.
    fn review(&mut self, customer_id: &CustomerId) {
        let now = callplane_schema::time::now();
        let unit = self.settings.unit;
        let horizon = chrono::Duration::from_std(self.settings.horizon).unwrap_or(chrono::Duration::hours(4));
        let Some(exposure) = self.exposures.get_mut(customer_id) else { return };
        let at = if exposure.at_risk(now + horizon, unit) {
            let calls: Vec<Billed> = exposure.calls.values().cloned().collect();
            cut_off(exposure.budget(), &calls, unit, now)
        } else {
            None
        };
        if at.is_none() && !exposure.cutting {
            return;
        }
        exposure.cutting = at.is_some();
        if let Some(at) = at {
            log::info!("customer {customer_id}: {} calls end at {at} unless the balance grows", exposure.calls.len());
        }
        for call_id in exposure.calls.keys() {
            self.calls.do_send(Deadline { call_id: call_id.clone(), at });
        }
        if exposure.calls.is_empty() {
            self.exposures.remove(customer_id);
        }
    }
}

/// Started units of a call answered at `answered` and ended at `ended`: every answered
/// call has started its first unit.
pub fn units(answered: NaiveDateTime, ended: NaiveDateTime, unit: Duration) -> i64 {
    let micros = (ended - answered).num_microseconds().unwrap_or(i64::MAX).max(0);
    let unit = i64::try_from(unit.as_micros()).unwrap_or(i64::MAX).max(1);
    ((micros + unit - 1) / unit).max(1)
}

/// The moment `calls` together stop being covered by `balance`, less a margin: `None`
/// when nothing costs anything.
pub fn cut_off(balance: i64, calls: &[Billed], unit: Duration, now: NaiveDateTime) -> Option<NaiveDateTime> {
    let burn: i64 = calls.iter().map(|c| c.rate).sum();
    if burn <= 0 {
        return None;
    }
    let cost =
        |t: NaiveDateTime| -> i64 { calls.iter().map(|c| units(c.answered, t.max(c.answered), unit) * c.rate).sum() };
    if cost(now) > balance {
        return Some(now);
    }
    // The cost only grows with time: find the last microsecond it is still covered.
    let unit_micros = i64::try_from(unit.as_micros()).unwrap_or(i64::MAX).max(1);
    let mut low = 0i64;
    let mut high = unit_micros.saturating_mul(balance / burn + 2);
    while low < high {
        let mid = low + (high - low + 1) / 2;
        if cost(now + chrono::Duration::microseconds(mid)) <= balance {
            low = mid;
        } else {
            high = mid - 1;
        }
    }
    let margin = (unit_micros / 2).min(1_000_000);
    Some(now + chrono::Duration::microseconds((low - margin).max(0)))
}

fn parse<T: serde::de::DeserializeOwned>(event: &Event) -> Result<T, DbError> {
    serde_json::from_str(&event.data).map_err(|e| DbError::Other(format!("event {}: {e}", event.id)))
}

impl DurableSubscriber for BillingSubscriber {
    const NAME: &'static str = "billing";
    type Config = BillingSettings;
    type Outcome = Vec<Change>;

    fn wants(event: &Event) -> bool {
        matches!(event.event_type.as_str(), "call.answered" | "call.ended" | "billing.created")
    }

    fn write(settings: &BillingSettings, tx: &mut WriteCtx<'_>, events: &[&Event]) -> Result<Vec<Change>, DbError> {
        let mut changes = Vec::new();
        for event in events {
            match event.event_type.as_str() {
                "call.answered" => {
                    let call: Call = parse(event)?;
                    if billing::find_by_reference(tx.conn, ReferenceType::Call, call.id.as_str())?.is_some() {
                        continue;
                    }
                    let account = billing_account::get_by_customer(tx.conn, &call.customer_id)?;
                    let rate = account.rates().call(call.destination.kind);
                    if rate == 0 {
                        continue;
                    }
                    let answered = call.tm_answer.unwrap_or(event.tm_create);
                    let reserved = call::get_any(tx.conn, &call.id).map(|c| c.reserved).unwrap_or(0);
                    let row = billing::open(tx.conn, &account, ReferenceType::Call, call.id.as_str(), rate, answered)?;
                    tx.emit(NewEvent::new("billing.created", Some(&row.customer_id), &row.id, &row)?)?;
                    let call = Billed { call_id: call.id, answered, rate, reserved };
                    let funds = Funds { balance: account.balance, reserved: account.reserved };
                    changes.push(Change::Opened { customer_id: row.customer_id, call, funds });
                }
                "call.ended" => {
                    let call: Call = parse(event)?;
                    // The call's hold on the balance ends with it, answered or not.
                    let reserved = match call::get_any(tx.conn, &call.id) {
                        Ok(row) => row.reserved,
                        Err(DbError::NotFound) => 0,
                        Err(e) => return Err(e),
                    };
                    if reserved != 0 {
                        billing_account::reserve(tx.conn, &call.customer_id, -reserved)?;
                    }
                    let Some(open) = billing::find_by_reference(tx.conn, ReferenceType::Call, call.id.as_str())? else {
                        continue;
                    };
                    if open.status != BillingStatus::Progressing {
                        continue;
                    }
                    let ended = call.tm_end.unwrap_or(event.tm_create);
                    let units = units(open.tm_create, ended, settings.unit);
                    let (row, account) = billing::finish(tx.conn, &open, units)?;
                    tx.emit(NewEvent::new("billing.updated", Some(&row.customer_id), &row.id, &row)?)?;
                    let before = account.balance - row.amount;
                    if before >= settings.balance_low && account.balance < settings.balance_low {
                        let view = account.view();
                        tx.emit(NewEvent::new("billing.balance_low", Some(&view.customer_id), &view.id, &view)?)?;
                    }
                    let funds = Funds { balance: account.balance, reserved: account.reserved };
                    changes.push(Change::Finished { customer_id: row.customer_id, call_id: call.id, funds });
                }
                "billing.created" => {
                    // Credits and debits by an operator move the cut-off of calls in progress.
                    let row: Billing = parse(event)?;
                    if row.reference_type == ReferenceType::Adjustment {
                        let account = billing_account::get_by_customer(tx.conn, &row.customer_id)?;
                        let funds = Funds { balance: account.balance, reserved: account.reserved };
                        changes.push(Change::Adjusted { customer_id: row.customer_id, funds });
                    }
                }
                _ => {}
            }
        }
        Ok(changes)
    }

    fn committed(&mut self, changes: Vec<Change>, _: &mut Context<Durable<Self>>) {
        let mut affected = BTreeSet::new();
        for change in changes {
            match change {
                Change::Opened { customer_id, call, funds } => {
                    let exposure = self.exposures.entry(customer_id.clone()).or_default();
                    exposure.funds = Some(funds);
                    exposure.add(call);
                    affected.insert(customer_id);
                }
                Change::Finished { customer_id, call_id, funds } => {
                    if let Some(exposure) = self.exposures.get_mut(&customer_id) {
                        exposure.funds = Some(funds);
                        exposure.remove(&call_id);
                        affected.insert(customer_id);
                    }
                }
                Change::Adjusted { customer_id, funds } => {
                    if let Some(exposure) = self.exposures.get_mut(&customer_id) {
                        exposure.funds = Some(funds);
                        affected.insert(customer_id);
                    }
                }
            }
        }
        for customer_id in affected {
            self.review(&customer_id);
        }
    }

    /// Calls billed when the process stopped are still being billed: load them once,
    /// before the first event.
    fn started(&mut self, ctx: &mut Context<Durable<Self>>) {
        let db = self.db.clone();
        let load = async move {
            db.read(|conn| {
                let mut loaded = Vec::new();
                for row in billing::list_progressing(conn)? {
                    let Ok(call_id) = row.reference_id.parse::<CallId>() else { continue };
                    let account = billing_account::get_by_customer(conn, &row.customer_id)?;
                    let funds = Funds { balance: account.balance, reserved: account.reserved };
                    let reserved = call::get_any(conn, &call_id).map(|c| c.reserved).unwrap_or(0);
                    let billed = Billed { call_id, answered: row.tm_create, rate: row.rate, reserved };
                    loaded.push((row.customer_id, funds, billed));
                }
                Ok(loaded)
            })
            .await
        };
        ctx.wait(fut::wrap_future::<_, Durable<Self>>(load).map(|loaded, act, _| match loaded {
            Ok(loaded) => {
                for (customer_id, funds, call) in loaded {
                    let exposure = act.subscriber.exposures.entry(customer_id).or_default();
                    exposure.funds = Some(funds);
                    exposure.add(call);
                }
            }
            Err(e) => log::error!("billing: cannot load the calls being billed: {e}"),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> NaiveDateTime {
        callplane_schema::time::from_unix_micros(1_800_000_000_000_000 + secs * 1_000_000).unwrap_or_default()
    }

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn units_are_started_minutes_or_seconds() {
        assert_eq!(units(t(0), t(0), MINUTE), 1, "an answered call starts its first minute");
        assert_eq!(units(t(0), t(59), MINUTE), 1);
        assert_eq!(units(t(0), t(60), MINUTE), 1);
        assert_eq!(units(t(0), t(61), MINUTE), 2);
        assert_eq!(units(t(0), t(61), Duration::from_secs(1)), 61);
    }

    #[test]
    fn one_call_is_cut_off_before_the_unit_it_cannot_pay() {
        let call = Billed { call_id: CallId::new(), answered: t(0), rate: 10_000, reserved: 10_000 };
        // 25,000 pays two started minutes: the call must end before 120 s.
        let at = cut_off(25_000, std::slice::from_ref(&call), MINUTE, t(5)).unwrap();
        assert_eq!(at, t(119));
        assert!(units(call.answered, at, MINUTE) * call.rate <= 25_000);
        assert_eq!(cut_off(25_000, &[Billed { rate: 0, ..call.clone() }], MINUTE, t(5)), None);
        // Nothing left: now.
        assert_eq!(cut_off(5_000, &[call], MINUTE, t(5)), Some(t(5)));
    }

    #[test]
    fn the_running_sums_tell_when_a_cut_off_is_needed() {
        let mut exposure =
            Exposure { funds: Some(Funds { balance: 1_000_000, reserved: 10_000 }), ..Exposure::default() };
        exposure.add(Billed { call_id: CallId::new(), answered: t(0), rate: 10_000, reserved: 10_000 });
        // 1,000,000 pays 100 minutes: safe for an hour, not for four.
        assert!(!exposure.at_risk(t(3600), MINUTE));
        assert!(exposure.at_risk(t(4 * 3600), MINUTE));
        let second = Billed { call_id: CallId::new(), answered: t(60), rate: 10_000, reserved: 0 };
        exposure.add(second.clone());
        assert!(exposure.at_risk(t(3600), MINUTE), "two calls burn it in 50 minutes");
        exposure.remove(&second.call_id);
        assert!(!exposure.at_risk(t(3600), MINUTE));
    }

    #[test]
    fn calls_share_the_balance() {
        let a = Billed { call_id: CallId::new(), answered: t(0), rate: 10_000, reserved: 10_000 };
        let b = Billed { call_id: CallId::new(), answered: t(30), rate: 10_000, reserved: 10_000 };
        let at = cut_off(40_000, &[a.clone(), b.clone()], MINUTE, t(31)).unwrap();
        let cost = |t| units(a.answered, t, MINUTE) * a.rate + units(b.answered, t, MINUTE) * b.rate;
        assert!(cost(at) <= 40_000, "covered at the cut-off");
        assert!(cost(at + chrono::Duration::seconds(2)) > 40_000, "and not much longer");
    }
}
