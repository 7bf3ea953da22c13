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

use std::collections::BTreeSet;
use std::time::Duration;

use actix::prelude::*;
use callplane_schema::ids::{CallId, CustomerId};
use callplane_schema::models::billing::{self, Billing, BillingStatus, ReferenceType};
use callplane_schema::models::billing_account;
use callplane_schema::models::call::Call;
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
}

impl Default for BillingSettings {
    fn default() -> Self {
        BillingSettings { unit: Duration::from_secs(60), balance_low: 1_000_000 }
    }
}

/// A call being billed, as the cut-off needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Billed {
    pub call_id: CallId,
    pub answered: NaiveDateTime,
    pub rate: i64,
}

/// What a write learned about a customer whose calls or balance changed.
#[derive(Debug)]
pub struct Exposure {
    pub customer_id: CustomerId,
    pub balance: i64,
    pub calls: Vec<Billed>,
}

pub struct BillingSubscriber {
    calls: Addr<CallManager>,
    settings: BillingSettings,
}

impl BillingSubscriber {
    pub fn start(
        calls: Addr<CallManager>,
        settings: BillingSettings,
        db: callplane_schema::Db,
        bus: Addr<crate::bus::EventBus>,
    ) -> Addr<Durable<BillingSubscriber>> {
        Durable::start(BillingSubscriber { calls, settings }, settings, db, bus)
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
    type Outcome = Vec<Exposure>;

    fn wants(event: &Event) -> bool {
        matches!(event.event_type.as_str(), "call.answered" | "call.ended" | "billing.created")
    }

    fn write(settings: &BillingSettings, tx: &mut WriteCtx<'_>, events: &[&Event]) -> Result<Vec<Exposure>, DbError> {
        let mut affected = BTreeSet::new();
        for event in events {
            match event.event_type.as_str() {
                "call.answered" => {
                    let call: Call = parse(event)?;
                    if billing::find_by_reference(tx.conn, ReferenceType::Call, call.id.as_str())?.is_some() {
                        continue;
                    }
                    let rate = billing_account::get_by_customer(tx.conn, &call.customer_id)?
                        .rates()
                        .call(call.destination.kind);
                    if rate == 0 {
                        continue;
                    }
                    let answered = call.tm_answer.unwrap_or(event.tm_create);
                    let row = billing::open(
                        tx.conn,
                        &call.customer_id,
                        ReferenceType::Call,
                        call.id.as_str(),
                        rate,
                        answered,
                    )?;
                    tx.emit(NewEvent::new("billing.created", Some(&row.customer_id), &row.id, &row)?)?;
                    affected.insert(call.customer_id);
                }
                "call.ended" => {
                    let call: Call = parse(event)?;
                    let Some(open) = billing::find_by_reference(tx.conn, ReferenceType::Call, call.id.as_str())? else {
                        continue;
                    };
                    if open.status != BillingStatus::Progressing {
                        continue;
                    }
                    let ended = call.tm_end.unwrap_or(event.tm_create);
                    let units = units(open.tm_create, ended, settings.unit);
                    let before = billing_account::get_by_customer(tx.conn, &call.customer_id)?.balance;
                    let (row, account) = billing::finish(tx.conn, &open, units)?;
                    tx.emit(NewEvent::new("billing.updated", Some(&row.customer_id), &row.id, &row)?)?;
                    if before >= settings.balance_low && account.balance < settings.balance_low {
                        let view = account.view();
                        tx.emit(NewEvent::new("billing.balance_low", Some(&view.customer_id), &view.id, &view)?)?;
                    }
                    affected.insert(call.customer_id);
                }
                "billing.created" => {
                    // Credits and debits by an operator move the cut-off of calls in progress.
                    let row: Billing = parse(event)?;
                    if row.reference_type == ReferenceType::Adjustment {
                        affected.insert(row.customer_id);
                    }
                }
                _ => {}
            }
        }
        affected
            .into_iter()
            .map(|customer_id| {
                let balance = billing_account::get_by_customer(tx.conn, &customer_id)?.balance;
                let calls = billing::list_progressing_for(tx.conn, &customer_id)?
                    .into_iter()
                    .filter(|b| b.reference_type == ReferenceType::Call)
                    .filter_map(|b| {
                        Some(Billed { call_id: b.reference_id.parse().ok()?, answered: b.tm_create, rate: b.rate })
                    })
                    .collect();
                Ok(Exposure { customer_id, balance, calls })
            })
            .collect()
    }

    fn committed(&mut self, exposures: Vec<Exposure>, _: &mut Context<Durable<Self>>) {
        let now = callplane_schema::time::now();
        for exposure in exposures {
            let at = cut_off(exposure.balance, &exposure.calls, self.settings.unit, now);
            if let Some(at) = at {
                log::debug!(
                    "customer {}: {} calls end at {at} unless the balance grows",
                    exposure.customer_id,
                    exposure.calls.len()
                );
            }
            for call in exposure.calls {
                self.calls.do_send(Deadline { call_id: call.call_id, at });
            }
        }
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
        let call = Billed { call_id: CallId::new(), answered: t(0), rate: 10_000 };
        // 25,000 pays two started minutes: the call must end before 120 s.
        let at = cut_off(25_000, std::slice::from_ref(&call), MINUTE, t(5)).unwrap();
        assert_eq!(at, t(119));
        assert!(units(call.answered, at, MINUTE) * call.rate <= 25_000);
        assert_eq!(cut_off(25_000, &[Billed { rate: 0, ..call.clone() }], MINUTE, t(5)), None);
        // Nothing left: now.
        assert_eq!(cut_off(5_000, &[call], MINUTE, t(5)), Some(t(5)));
    }

    #[test]
    fn calls_share_the_balance() {
        let a = Billed { call_id: CallId::new(), answered: t(0), rate: 10_000 };
        let b = Billed { call_id: CallId::new(), answered: t(30), rate: 10_000 };
        let at = cut_off(40_000, &[a.clone(), b.clone()], MINUTE, t(31)).unwrap();
        let cost = |t| units(a.answered, t, MINUTE) * a.rate + units(b.answered, t, MINUTE) * b.rate;
        assert!(cost(at) <= 40_000, "covered at the cut-off");
        assert!(cost(at + chrono::Duration::seconds(2)) > 40_000, "and not much longer");
    }
}
