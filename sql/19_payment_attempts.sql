-- M-Pesa payments (Lipa na M-Pesa Online, "STK push"): the attempts to take
-- a payment, and the ledger of what the provider told us about them.

-- The kinds of required action, listed once: what each asks of whoever works
-- through the outbox (app_public.required_actions).
create table app_hidden.required_action_types (
  action text primary key,
  meaning text not null
);
comment on table app_hidden.required_action_types is
  'Every kind of required action the rules or the payment callbacks raise.';
insert into app_hidden.required_action_types (action, meaning) values
  ('ALERT_CLIENT_RETRY', 'The payment failed: tell the client, who may pay again (initiatePayment).'),
  ('RECONCILE_PAYMENT_AMOUNT', 'M-Pesa took an amount other than the price: the payment was not confirmed; settle the difference by hand (refund, or confirm).'),
  ('REFUND_OR_RECONCILE_PAYMENT', 'M-Pesa took money for an attempt that no longer counts (superseded, timed out, or the payment already cancelled or confirmed): refund it, or apply it by hand.');
alter table app_hidden.payment_state_actions
  add constraint payment_state_actions_action_fkey foreign key (action) references app_hidden.required_action_types;
alter table app_public.required_actions
  add constraint required_actions_action_fkey foreign key (action) references app_hidden.required_action_types,
  add column detail jsonb;
comment on column app_public.required_actions.detail is
  'What the action needs to know, e.g. the amount expected and the amount taken.';

-- One attempt per STK push. Initiating a payment (pending → initiated, or the
-- retry failed → initiated) opens an attempt; the attempt is settled once,
-- by the provider's callback, by asking the provider (STK push query), or by
-- giving up; a retry opens a new attempt, and the old ones are kept.
--   requesting       opened; the push is queued (graphile-worker)
--   pending          M-Pesa accepted the push: CheckoutRequestID known
--   confirmed        the payer paid the amount asked
--   failed           M-Pesa refused the push, or the payer did not pay
--   amount_mismatch  M-Pesa took another amount: not confirmed, to reconcile
--   abandoned        the payment left `initiated` some other way (cancelled,
--                    or an outcome recorded by hand)
create table app_public.payment_attempts (
  id uuid primary key default gen_random_uuid(),
  payment_id uuid not null references app_public.payments,
  session_id uuid not null references app_public.sessions,
  attempt_no integer not null,
  phone text not null,
  amount_kes integer not null,
  status text not null default 'requesting'
    constraint payment_attempts_status_known check (status in ('requesting', 'pending', 'confirmed', 'failed', 'amount_mismatch', 'abandoned')),
  merchant_request_id text,
  checkout_request_id text unique,
  result_code integer,
  result_desc text,
  mpesa_receipt text unique,
  settled_by text
    constraint payment_attempts_settled_by_known check (settled_by in ('push', 'callback', 'query', 'timeout', 'payment_status')),
  created_at timestamptz not null default now(),
  pushed_at timestamptz,
  settled_at timestamptz,
  unique (payment_id, attempt_no),
  constraint payment_attempts_settled_consistently check (
    (status in ('requesting', 'pending')) = (settled_at is null)
    and (settled_at is null) = (settled_by is null)),
  constraint payment_attempts_pending_has_checkout check (status <> 'pending' or checkout_request_id is not null)
);
-- At most one open attempt per payment: the one the payment is waiting for.
create unique index payment_attempts_one_open_idx on app_public.payment_attempts (payment_id) where settled_at is null;
create index payment_attempts_session_id_idx on app_public.payment_attempts (session_id);
create index payment_attempts_open_idx on app_public.payment_attempts (created_at) where settled_at is null;
comment on table app_public.payment_attempts is
  'One M-Pesa STK push for a payment, and how it ended. A retry is a new attempt; attempts are kept.';
comment on column app_public.payment_attempts.status is
  'requesting, pending (the prompt is on the phone), confirmed, failed, amount_mismatch (to reconcile) or abandoned.';
comment on column app_public.payment_attempts.checkout_request_id is 'M-Pesa''s CheckoutRequestID: the key of its callbacks.';
comment on column app_public.payment_attempts.result_code is 'M-Pesa''s ResultCode (0 paid; app_hidden.mpesa_result_codes).';
comment on column app_public.payment_attempts.mpesa_receipt is 'The M-Pesa receipt number of the money taken.';
comment on column app_public.payment_attempts.settled_by is
  'What settled it: push (refused), callback, query (STK push query), timeout (no answer in time), payment_status (the payment moved on).';

-- M-Pesa's result codes that we know (any other non-zero code is a failure
-- too). The simulator and the tests use this list.
create table app_hidden.mpesa_result_codes (
  result_code integer primary key,
  meaning text not null
);
comment on table app_hidden.mpesa_result_codes is 'M-Pesa STK result codes: 0 is success, every other one a failure.';
insert into app_hidden.mpesa_result_codes (result_code, meaning) values
  (0, 'The payment was made.'),
  (1, 'Insufficient balance.'),
  (17, 'Provider-side failure.'),
  (26, 'Provider-side failure (system busy).'),
  (1001, 'The subscriber is busy with another session.'),
  (1019, 'The transaction expired.'),
  (1032, 'Cancelled by the user.'),
  (1037, 'The user could not be reached.'),
  (2001, 'Wrong PIN.'),
  (9999, 'Provider-side failure.');

-- What a callback did, as data: the answer the endpoint gives, and whether it
-- changed the flow. app_private.receive_payment_callback decides which.
create table app_hidden.payment_callback_outcomes (
  outcome text primary key,
  applied boolean not null,
  acknowledged boolean not null,
  meaning text not null
);
comment on table app_hidden.payment_callback_outcomes is
  'What can become of a payment callback: applied to the flow or not, acknowledged (HTTP 200) or refused (409).';
insert into app_hidden.payment_callback_outcomes (outcome, applied, acknowledged, meaning) values
  ('confirmed', true, true, 'Paid the amount asked: payment confirmed, session paid and on to forms_required or ready.'),
  ('failed', true, true, 'Not paid: payment failed, ALERT_CLIENT_RETRY raised; the client may retry.'),
  ('amount_mismatch', false, true, 'Paid another amount: not confirmed; RECONCILE_PAYMENT_AMOUNT raised; the payment stays initiated.'),
  ('late_success', false, true, 'Paid, for an attempt that no longer counts (superseded, timed out, payment cancelled or confirmed): REFUND_OR_RECONCILE_PAYMENT raised.'),
  ('late_failure', false, true, 'A failure for an attempt already settled: nothing to do.'),
  ('already_settled', false, true, 'Agrees with how the attempt was already settled (by an STK push query): nothing to do.'),
  ('unknown_checkout', false, true, 'No attempt has this CheckoutRequestID (yet): recorded; applied if the push it answers is recorded later.'),
  ('conflict', false, false, 'A callback for this CheckoutRequestID was received before with a different body: refused, kept for review.'),
  ('receipt_reused', false, false, 'The M-Pesa receipt number was already used by another CheckoutRequestID: refused, kept for review.');

-- The idempotency ledger: one row per CheckoutRequestID, the first callback
-- received for it, what it did and the result given. A repeat with the same
-- content gets the stored result; one with other content is a conflict.
create table app_private.payment_callbacks (
  id bigint generated always as identity primary key,
  checkout_request_id text not null unique,
  merchant_request_id text,
  result_code integer not null,
  result_desc text,
  amount numeric,
  mpesa_receipt text unique,
  phone text,
  transaction_date text,
  fingerprint text not null,
  body jsonb,
  attempt_id uuid references app_public.payment_attempts,
  outcome text not null references app_hidden.payment_callback_outcomes,
  result jsonb not null,
  deliveries integer not null default 1,
  received_at timestamptz not null default now(),
  last_received_at timestamptz not null default now()
);
comment on table app_private.payment_callbacks is
  'The payment callback ledger: the first callback for each CheckoutRequestID, its outcome and the result returned.';
comment on column app_private.payment_callbacks.fingerprint is 'A hash of the callback''s content: a repeat must match it.';
comment on column app_private.payment_callbacks.deliveries is 'How many times this same callback arrived.';

-- Callbacks refused (conflict, receipt_reused), kept for someone to review.
create table app_private.payment_callback_conflicts (
  id bigint generated always as identity primary key,
  checkout_request_id text not null,
  outcome text not null references app_hidden.payment_callback_outcomes,
  fingerprint text not null,
  body jsonb,
  received_at timestamptz not null default now()
);
create index payment_callback_conflicts_checkout_idx on app_private.payment_callback_conflicts (checkout_request_id);
comment on table app_private.payment_callback_conflicts is
  'Payment callbacks refused as conflicting with an earlier one, for review.';

-- Payment callbacks come from the payment provider only.
insert into app_hidden.step_permissions (step, role, scope, note) values
  ('receive_payment_callback', 'payment_provider', 'any', 'Only the payment provider reports what became of a payment attempt.');

create type app_public.payment_callback_result as (
  outcome text,
  acknowledged boolean,
  duplicate boolean,
  session_id uuid,
  attempt_id uuid,
  payment_status text,
  session_status text,
  message text
);
comment on type app_public.payment_callback_result is
  'What a payment callback did (outcome, see the README), whether it is acknowledged, whether it repeats one received before (then the stored result is returned), and the flow after it.';
