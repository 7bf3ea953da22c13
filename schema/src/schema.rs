//! The tables, written by hand in the SQL types all three backends share: ids as text,
//! JSON documents as text, money as BIGINT micro-units, timestamps as UTC TIMESTAMP.

diesel::table! {
    customers (id) {
        id -> Text,
        name -> Text,
        detail -> Text,
        email -> Text,
        phone_number -> Text,
        address -> Text,
        tm_create -> Timestamp,
        tm_update -> Timestamp,
        tm_delete -> Nullable<Timestamp>,
    }
}

diesel::table! {
    agents (id) {
        id -> Text,
        customer_id -> Nullable<Text>,
        username -> Text,
        password_hash -> Text,
        name -> Text,
        detail -> Text,
        role -> Text,
        status -> Text,
        addresses -> Text,
        tm_create -> Timestamp,
        tm_update -> Timestamp,
    }
}

diesel::table! {
    accesskeys (id) {
        id -> Text,
        customer_id -> Text,
        name -> Text,
        detail -> Text,
        token_hash -> Text,
        token_hint -> Text,
        tm_expire -> Nullable<Timestamp>,
        tm_create -> Timestamp,
        tm_update -> Timestamp,
        tm_delete -> Nullable<Timestamp>,
    }
}

diesel::table! {
    billing_accounts (id) {
        id -> Text,
        customer_id -> Text,
        balance -> BigInt,
        currency -> Text,
        rates -> Text,
        tm_create -> Timestamp,
        tm_update -> Timestamp,
        reserved -> BigInt,
    }
}

diesel::table! {
    events (seq) {
        seq -> BigInt,
        id -> Text,
        customer_id -> Nullable<Text>,
        event_type -> Text,
        resource_id -> Text,
        data -> Text,
        tm_create -> Timestamp,
    }
}

diesel::joinable!(agents -> customers (customer_id));
diesel::joinable!(accesskeys -> customers (customer_id));
diesel::joinable!(billing_accounts -> customers (customer_id));

diesel::table! {
    calls (id) {
        id -> Text,
        customer_id -> Text,
        flow_id -> Nullable<Text>,
        activeflow_id -> Nullable<Text>,
        direction -> Text,
        source_type -> Text,
        source_target -> Text,
        source_target_name -> Text,
        source_name -> Text,
        destination_type -> Text,
        destination_target -> Text,
        destination_target_name -> Text,
        destination_name -> Text,
        status -> Text,
        hangup_by -> Nullable<Text>,
        hangup_reason -> Nullable<Text>,
        hold -> Bool,
        mute_direction -> Nullable<Text>,
        actions -> Text,
        variables -> Text,
        tm_create -> Timestamp,
        tm_ringing -> Nullable<Timestamp>,
        tm_answer -> Nullable<Timestamp>,
        tm_end -> Nullable<Timestamp>,
        tm_update -> Timestamp,
        tm_delete -> Nullable<Timestamp>,
        owner_id -> Nullable<Text>,
        reserved -> BigInt,
    }
}

diesel::table! {
    idempotency_keys (customer_id, idem_key) {
        customer_id -> Text,
        idem_key -> Text,
        request_hash -> Text,
        status_code -> Integer,
        location -> Nullable<Text>,
        response -> Text,
        tm_create -> Timestamp,
    }
}

diesel::table! {
    billings (id) {
        id -> Text,
        customer_id -> Text,
        billing_account_id -> Text,
        reference_type -> Text,
        reference_id -> Text,
        status -> Text,
        units -> BigInt,
        rate -> BigInt,
        amount -> BigInt,
        balance_after -> BigInt,
        tm_create -> Timestamp,
        tm_update -> Timestamp,
    }
}

diesel::table! {
    subscriber_cursors (name) {
        name -> Text,
        seq -> BigInt,
        tm_update -> Timestamp,
    }
}

diesel::table! {
    agent_stats (agent_id) {
        agent_id -> Text,
        customer_id -> Text,
        day -> Text,
        active_calls -> BigInt,
        calls_today -> BigInt,
        talk_seconds_today -> BigInt,
        calls_total -> BigInt,
        talk_seconds_total -> BigInt,
        tm_update -> Timestamp,
    }
}

diesel::table! {
    webhooks (id) {
        id -> Text,
        customer_id -> Text,
        name -> Text,
        detail -> Text,
        uri -> Text,
        method -> Text,
        event_types -> Text,
        secret -> Text,
        since_seq -> BigInt,
        tm_create -> Timestamp,
        tm_update -> Timestamp,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> Text,
        webhook_id -> Text,
        customer_id -> Text,
        event_id -> Text,
        event_seq -> BigInt,
        event_type -> Text,
        resource_id -> Text,
        body -> Text,
        status -> Text,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        tm_create -> Timestamp,
        tm_update -> Timestamp,
    }
}

diesel::table! {
    webhook_attempts (id) {
        id -> Text,
        delivery_id -> Text,
        webhook_id -> Text,
        event_id -> Text,
        event_type -> Text,
        attempt -> Integer,
        status_code -> Nullable<Integer>,
        error -> Nullable<Text>,
        latency_ms -> Nullable<BigInt>,
        next_attempt_at -> Nullable<Timestamp>,
        status -> Text,
        tm_create -> Timestamp,
    }
}

diesel::table! {
    flows (id) {
        id -> Text,
        customer_id -> Text,
        name -> Text,
        detail -> Text,
        actions -> Text,
        tm_create -> Timestamp,
        tm_update -> Timestamp,
        tm_delete -> Nullable<Timestamp>,
    }
}
diesel::table! {
    activeflows (id) {
        id -> Text,
        customer_id -> Text,
        flow_id -> Nullable<Text>,
        reference_type -> Text,
        reference_id -> Text,
        status -> Text,
        end_reason -> Nullable<Text>,
        actions -> Text,
        current_action_id -> Nullable<Text>,
        executed_actions -> BigInt,
        variables -> Text,
        tm_create -> Timestamp,
        tm_update -> Timestamp,
        tm_end -> Nullable<Timestamp>,
    }
}
diesel::table! {
    conferences (id) {
        id -> Text,
        customer_id -> Text,
        conference_type -> Text,
        name -> Text,
        detail -> Text,
        status -> Text,
        timeout -> BigInt,
        pre_flow_id -> Nullable<Text>,
        post_flow_id -> Nullable<Text>,
        tm_create -> Timestamp,
        tm_update -> Timestamp,
        tm_end -> Nullable<Timestamp>,
        tm_delete -> Nullable<Timestamp>,
    }
}
diesel::table! {
    conferencecalls (id) {
        id -> Text,
        customer_id -> Text,
        conference_id -> Text,
        call_id -> Text,
        status -> Text,
        tm_join -> Nullable<Timestamp>,
        tm_leave -> Nullable<Timestamp>,
        tm_create -> Timestamp,
        tm_update -> Timestamp,
    }
}
diesel::table! {
    numbers (id) {
        id -> Text,
        customer_id -> Text,
        number -> Text,
        call_flow_id -> Nullable<Text>,
        message_flow_id -> Nullable<Text>,
        name -> Text,
        detail -> Text,
        tm_create -> Timestamp,
        tm_update -> Timestamp,
    }
}
diesel::table! {
    messages (id) {
        id -> Text,
        customer_id -> Text,
        direction -> Text,
        source -> Text,
        targets -> Text,
        text -> Text,
        tm_create -> Timestamp,
        tm_update -> Timestamp,
        tm_finish -> Nullable<Timestamp>,
    }
}
diesel::table! {
    flow_secrets (customer_id) {
        customer_id -> Text,
        secret -> Text,
        tm_create -> Timestamp,
        tm_update -> Timestamp,
    }
}

diesel::joinable!(calls -> customers (customer_id));
diesel::allow_tables_to_appear_in_same_query!(
    customers,
    agents,
    accesskeys,
    billing_accounts,
    events,
    calls,
    idempotency_keys,
    billings,
    subscriber_cursors,
    agent_stats,
    webhooks,
    webhook_deliveries,
    webhook_attempts,
    flows,
    activeflows,
    conferences,
    conferencecalls,
    numbers,
    messages,
    flow_secrets,
);
