-- Integrations (an SMS sender, a calendar, analytics, the video provider)
-- follow the flow through the change feed, work through the required
-- actions, and receive webhooks.

-- The change feed is the audit log, read in commit order: each entry records
-- its transaction (txid), and a cursor is a pair of snapshots
-- (44_change_feed.sql). An index on txid finds what committed after a
-- snapshot. (Entries made before this column existed get this migration's
-- transaction: they come first, together.)
-- (A bigint, not xid8: the API has no type for xid8. 64-bit transaction ids
-- never wrap around.)
alter table app_public.audit_entries add column txid bigint not null default pg_current_xact_id()::text::bigint;
create index audit_entries_txid_idx on app_public.audit_entries (txid);
comment on column app_public.audit_entries.txid is 'The transaction that made the change: the change feed''s cursor is made of snapshots.';

-- One change event, as the feed and the subscriptions give it.
create type app_public.change_event as (
  id bigint,
  cursor text,
  event_type text,
  session_id uuid,
  entity_type text,
  entity_id uuid,
  old_value text,
  new_value text,
  step text,
  reason text,
  actor text,
  request_id text,
  created_at timestamptz
);
comment on type app_public.change_event is
  'A committed change (an audit entry): its event type (entity.new_state), and the cursor to resume the feed after it.';
comment on column app_public.change_event.cursor is
  'Pass it as `after` to get the changes committed after this one; opaque.';
comment on column app_public.change_event.event_type is
  'entity.new_state, e.g. payment.confirmed, session.cancelled, required_action.open.';

-- A fifth API role: integrations read every session's flow (not write it),
-- work through the required actions and register webhooks.
alter table app_hidden.step_permissions drop constraint step_permissions_role_check;
alter table app_hidden.step_permissions add constraint step_permissions_role_check
  check (role in ('client', 'therapist', 'admin', 'payment_provider', 'integration'));

-- The required actions are an outbox: open, claimed by one consumer for a
-- while, completed with a result. A claim not completed in time returns to
-- the queue. Every status change is audited (entity type required_action,
-- entity id its uid), so it is in the change feed too.
alter table app_public.required_actions
  add column uid uuid not null default gen_random_uuid() unique,
  add column status text not null default 'open'
    constraint required_actions_status_known check (status in ('open', 'claimed', 'completed')),
  add column claimed_by text,
  add column claim_expires_at timestamptz,
  add column claims integer not null default 0,
  add column completed_at timestamptz,
  add column result jsonb,
  add constraint required_actions_claim_consistent check ((status = 'claimed') = (claimed_by is not null and claim_expires_at is not null)),
  add constraint required_actions_completion_consistent check ((status = 'completed') = (completed_at is not null));
create index required_actions_queue_idx on app_public.required_actions (id) where status <> 'completed';
comment on column app_public.required_actions.uid is 'The action''s id in the audit log and the change feed.';
comment on column app_public.required_actions.status is 'open (waiting), claimed (a consumer works on it), completed.';
comment on column app_public.required_actions.claimed_by is 'The consumer that holds the claim.';
comment on column app_public.required_actions.claim_expires_at is 'When an uncompleted claim returns to the queue.';
comment on column app_public.required_actions.claims is 'How many times it was claimed.';
comment on column app_public.required_actions.result is 'What the consumer reported when it completed the action.';

-- Which status changes an action may make, as data.
create table app_hidden.required_action_transitions (
  from_status text not null,
  to_status text not null,
  note text not null,
  primary key (from_status, to_status)
);
comment on table app_hidden.required_action_transitions is 'The required actions'' small state machine.';
insert into app_hidden.required_action_transitions (from_status, to_status, note) values
  ('open', 'claimed', 'A consumer claims it.'),
  ('claimed', 'completed', 'The consumer holding the claim completes it.'),
  ('claimed', 'open', 'The claim expired (or was released): back in the queue.');

insert into app_hidden.step_permissions (step, role, scope, note) values
  ('claim_required_actions',   'integration', 'any', 'Integrations work through the outbox.'),
  ('claim_required_actions',   'admin',       'any', 'Admins may do the rest.'),
  ('complete_required_action', 'integration', 'any', 'The consumer holding the claim completes it.'),
  ('complete_required_action', 'admin',       'any', 'Admins may do the rest.'),
  ('release_required_action',  'integration', 'any', 'The consumer holding the claim gives it back.'),
  ('release_required_action',  'admin',       'any', 'Admins may do the rest.'),
  ('register_webhook',         'integration', 'any', 'Integrations register where their events go.'),
  ('register_webhook',         'admin',       'any', 'Admins may do the rest.');

insert into app_hidden.error_codes (code, sqlstate, meaning, example) values
  ('ACTION_NOT_CLAIMED', 'QFAC1',
   'The required action is not claimed by this consumer (never claimed, claimed by another, its claim expired and was taken, or completed).',
   'Required action 42 is not claimed by sms-sender-1: claimed by sms-sender-2'),
  ('INVALID_CURSOR', 'QFCR1',
   'The change feed cursor is not one the feed gave out.',
   'Invalid cursor: 12:xyz');

-- Webhooks: where an integration wants its events, signed with a secret only
-- it and we know. Each keeps its own place in the change feed (cursor).
create table app_private.webhooks (
  id uuid primary key default gen_random_uuid(),
  url text not null
    constraint webhooks_url_http check (url ~ '^https?://[^\s/]+(/\S*)?$' and length(url) <= 2000),
  event_types text[] not null
    constraint webhooks_event_types_format check (
      cardinality(event_types) between 1 and 50
      and array_to_string(event_types, ' ') ~ '^(\*|[a-z_]+\.(\*|[a-z_]+))( (\*|[a-z_]+\.(\*|[a-z_]+)))*$'),
  secret text not null,
  registered_by text not null,
  active boolean not null default true,
  cursor text,
  created_at timestamptz not null default now()
);
comment on table app_private.webhooks is 'Registered webhooks: a URL, the event types it wants (payment.*, session.cancelled, *), its signing secret, and its place in the change feed.';
comment on constraint webhooks_url_http on app_private.webhooks is 'url must be an http or https URL';
comment on constraint webhooks_event_types_format on app_private.webhooks is
  'event_types must be 1 to 50 patterns like payment.confirmed, payment.* or *';

create table app_private.webhook_deliveries (
  id bigint generated always as identity primary key,
  webhook_id uuid not null references app_private.webhooks,
  event_id bigint not null,
  event jsonb not null,
  status text not null default 'pending'
    constraint webhook_deliveries_status_known check (status in ('pending', 'delivered', 'failed')),
  attempts integer not null default 0,
  created_at timestamptz not null default now(),
  delivered_at timestamptz,
  unique (webhook_id, event_id)
);
comment on table app_private.webhook_deliveries is 'One event to one webhook: pending until delivered, or failed after the last attempt.';

create table app_private.webhook_attempts (
  id bigint generated always as identity primary key,
  delivery_id bigint not null references app_private.webhook_deliveries,
  attempt_no integer not null,
  started_at timestamptz not null,
  duration_ms integer not null,
  status_code integer,
  error text,
  unique (delivery_id, attempt_no)
);
comment on table app_private.webhook_attempts is 'Every attempt to deliver a webhook: when, how long, the HTTP status or the error.';

create type app_public.webhook_registration as (
  id uuid,
  url text,
  event_types text[],
  secret text
);
comment on type app_public.webhook_registration is
  'A registered webhook, and its signing secret (given once, at registration).';
