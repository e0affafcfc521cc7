--! Previous: -
--! Hash: sha1:c9f47ecc12899582ff39437372c919db9318e439
--! Message: The rules in Postgres: states, transitions, cross-state sync, audit log, flow steps

--! Included 00_schemas.sql
-- Three schemas, as in graphile/starter:
--   app_public  the data the API exposes (flow tables, state lookups, audit log)
--               and the flow-step functions;
--   app_hidden  the rules tables and the DBA tools: readable, never exposed;
--   app_private trigger functions and helpers that nobody calls directly.
create schema app_public;
create schema app_hidden;
create schema app_private;

comment on schema app_public is 'The flow-integrity data and flow steps that the API exposes.';
comment on schema app_hidden is 'The rules of the state machines, as data, and the tools DBAs use to inspect them.';
comment on schema app_private is 'Trigger functions and helpers; not for direct use.';

-- Nobody but the owner creates objects in the public schema.
revoke create on schema public from public;
--! EndIncluded 00_schemas.sql
--! Included 10_rules_tables.sql
-- The rules of the three state machines of the reference
-- (../shared/reference/flow-integrity-state-machines.md), plus intake forms,
-- live here as rows. Triggers read them on every write; nothing else holds a
-- copy. Every row has a note; a row that comes from one of our decisions
-- (../shared/reference/decisions.md) names it.

-- The decisions taken where the reference contradicts itself or is silent.
create table app_hidden.decisions (
  code text primary key check (code ~ '^D[0-9]+$'),
  gap text not null,
  decision text not null
);
comment on table app_hidden.decisions is
  'Our decisions where the reference contradicts itself or is silent (decisions.md); rules rows name them.';

-- The entities that have a state machine.
create table app_hidden.entity_types (
  name text primary key,
  position smallint not null unique,
  state_table regclass not null,
  entity_table regclass not null,
  note text not null,
  decision text references app_hidden.decisions
);
comment on table app_hidden.entity_types is
  'The entities that carry a status: payment, session, video (call) and form (intake form).';

-- One lookup table of states per machine, in app_public: the status columns
-- take their values from them, and the API turns each into a GraphQL enum.
-- (The status columns hold no foreign key to them: an FK check would take a
-- KEY SHARE lock on the same few lookup rows in every concurrent transaction;
-- the transition triggers already admit only states named in these rules.)
create table app_public.payment_states (
  name text primary key check (name ~ '^[a-z_]+$'),
  description text not null,
  position smallint not null unique,
  is_initial boolean not null default false,
  is_terminal boolean not null default false,
  note text not null,
  decision text references app_hidden.decisions
);
create table app_public.session_states (like app_public.payment_states including all);
create table app_public.video_call_states (like app_public.payment_states including all);
create table app_public.form_states (like app_public.payment_states including all);
alter table app_public.session_states add foreign key (decision) references app_hidden.decisions;
alter table app_public.video_call_states add foreign key (decision) references app_hidden.decisions;
alter table app_public.form_states add foreign key (decision) references app_hidden.decisions;

-- Each machine has exactly one initial state.
create unique index payment_states_one_initial on app_public.payment_states (is_initial) where is_initial;
create unique index session_states_one_initial on app_public.session_states (is_initial) where is_initial;
create unique index video_call_states_one_initial on app_public.video_call_states (is_initial) where is_initial;
create unique index form_states_one_initial on app_public.form_states (is_initial) where is_initial;

comment on table app_public.payment_states is E'@enum\nThe states of a payment (M-Pesa).';
comment on table app_public.session_states is E'@enum\nThe states of a therapy session booking.';
comment on table app_public.video_call_states is E'@enum\nThe states of a session''s video call.';
comment on table app_public.form_states is E'@enum\nThe states of a required intake form.';

-- All states of all machines, for the rules that are written once for every machine.
create view app_hidden.states as
  select 'payment'::text as entity_type, name, position, is_initial, is_terminal, note, decision from app_public.payment_states
  union all
  select 'session', name, position, is_initial, is_terminal, note, decision from app_public.session_states
  union all
  select 'video', name, position, is_initial, is_terminal, note, decision from app_public.video_call_states
  union all
  select 'form', name, position, is_initial, is_terminal, note, decision from app_public.form_states;
comment on view app_hidden.states is 'Every state of every machine, with the machine''s name as entity_type.';

-- The allowed transitions of every machine. `position` orders a state's
-- allowed next states as the reference lists them (error messages use it).
create table app_hidden.transitions (
  entity_type text not null references app_hidden.entity_types,
  from_state text not null,
  to_state text not null,
  position smallint not null,
  note text not null,
  decision text references app_hidden.decisions,
  primary key (entity_type, from_state, to_state),
  unique (entity_type, from_state, position),
  check (from_state <> to_state)
);
comment on table app_hidden.transitions is
  'The allowed status changes of each machine; any other change is refused.';

-- The reason codes that name why a specific transition is refused.
create table app_hidden.reason_codes (
  code text primary key check (code ~ '^[A-Z_]+$'),
  meaning text not null
);
comment on table app_hidden.reason_codes is 'Why a forbidden transition is refused.';

-- Refused transitions that carry a specific reason code instead of the
-- generic INVALID_STATE_TRANSITION (decision D6).
create table app_hidden.forbidden_transitions (
  entity_type text not null references app_hidden.entity_types,
  from_state text not null,
  to_state text not null,
  reason_code text not null references app_hidden.reason_codes,
  note text not null,
  decision text references app_hidden.decisions,
  primary key (entity_type, from_state, to_state)
);
comment on table app_hidden.forbidden_transitions is
  'Transitions refused with a specific reason code (reference: FORBIDDEN_TRANSITIONS).';

-- Payment ↔ session: which session states each payment state allows.
create table app_hidden.payment_session_sync (
  payment_state text not null references app_public.payment_states,
  session_state text not null references app_public.session_states,
  note text not null,
  decision text references app_hidden.decisions,
  primary key (payment_state, session_state)
);
comment on table app_hidden.payment_session_sync is
  'The session states each payment state allows, checked when a transaction commits.';

-- What a payment state requires to be done (reference: requiredActions).
create table app_hidden.payment_state_actions (
  payment_state text not null references app_public.payment_states,
  action text not null check (action ~ '^[A-Z_]+$'),
  note text not null,
  decision text references app_hidden.decisions,
  primary key (payment_state, action)
);
comment on table app_hidden.payment_state_actions is
  'The actions raised (into app_public.required_actions) when a payment enters a state.';

-- Session ↔ video call: which video states each session state allows.
create table app_hidden.session_video_sync (
  session_state text not null references app_public.session_states,
  video_state text not null references app_public.video_call_states,
  note text not null,
  decision text references app_hidden.decisions,
  primary key (session_state, video_state)
);
comment on table app_hidden.session_video_sync is
  'The video call states each session state allows, checked when a transaction commits.';

-- Error codes: every error a user can cause, listed once (code, SQLSTATE,
-- meaning, example). Our SQLSTATEs are class QF: 5 characters, third not 0
-- or P, fourth a letter, not ending in 000, so they never collide with
-- PostgreSQL's own.
create table app_hidden.error_codes (
  code text primary key check (code ~ '^[A-Z_]+$'),
  sqlstate text not null unique
    check (sqlstate ~ '^[A-EG-OQ-WYZ][0-9A-Z][1-9A-OQ-Z][A-Z][0-9A-Z]$' and right(sqlstate, 3) <> '000'),
  meaning text not null,
  example text not null
);
comment on table app_hidden.error_codes is
  'Every error code a user can cause: its SQLSTATE, meaning and an example message.';

-- Who may join the call in each session state (reference: canJoinCall), and
-- the error code that refuses a join.
create table app_hidden.session_call_access (
  session_state text primary key references app_public.session_states,
  can_join_call boolean not null,
  refusal_code text references app_hidden.error_codes,
  refusal_message text,
  note text not null,
  decision text references app_hidden.decisions,
  check (can_join_call = (refusal_code is null) and (refusal_code is null) = (refusal_message is null))
);
comment on table app_hidden.session_call_access is
  'Whether the video call may be joined in each session state, and why not.';

-- Which session states need every required intake form complete (D7).
create table app_hidden.session_form_requirements (
  session_state text primary key references app_public.session_states,
  forms_complete_required boolean not null,
  note text not null,
  decision text references app_hidden.decisions
);
comment on table app_hidden.session_form_requirements is
  'Whether a session state needs every required intake form complete (decision D7).';

-- A rules row that names a state must name one of its machine's states.
-- (transitions and forbidden_transitions serve every machine, so a foreign
-- key cannot say it.)
create function app_private.tg_rules__check_states() returns trigger
language plpgsql as $$
begin
  if not exists (select 1 from app_hidden.states s where s.entity_type = new.entity_type and s.name = new.from_state)
     or not exists (select 1 from app_hidden.states s where s.entity_type = new.entity_type and s.name = new.to_state) then
    raise exception 'Rules row names an unknown % state: % → %', new.entity_type, new.from_state, new.to_state
      using errcode = 'integrity_constraint_violation';
  end if;
  if tg_table_name = 'forbidden_transitions' and exists (
    select 1 from app_hidden.transitions t
    where t.entity_type = new.entity_type and t.from_state = new.from_state and t.to_state = new.to_state
  ) then
    raise exception 'A forbidden transition cannot also be allowed: % % → %', new.entity_type, new.from_state, new.to_state
      using errcode = 'integrity_constraint_violation';
  end if;
  return new;
end;
$$;
create trigger _100_check_states before insert or update on app_hidden.transitions
  for each row execute function app_private.tg_rules__check_states();
create trigger _100_check_states before insert or update on app_hidden.forbidden_transitions
  for each row execute function app_private.tg_rules__check_states();
--! EndIncluded 10_rules_tables.sql
--! Included 11_flow_tables.sql
-- The flow of one session: the session, its payment, its video call and its
-- required intake forms. Every row carries session_id (the session's own id
-- for sessions), so one session's whole flow can later live on one shard.
-- Statuses start at their machine's initial state; only the rules change them.

create table app_public.sessions (
  id uuid primary key default gen_random_uuid(),
  client_id uuid not null,
  therapist_id uuid not null,
  scheduled_at timestamptz not null,
  duration_minutes integer not null
    constraint sessions_duration_minutes_range check (duration_minutes between 15 and 240),
  price_kes integer not null
    constraint sessions_price_kes_positive check (price_kes > 0),
  status text not null default 'requested',
  created_at timestamptz not null default now(),
  constraint sessions_client_is_not_therapist check (client_id <> therapist_id)
);
create index sessions_client_id_idx on app_public.sessions (client_id);
create index sessions_therapist_id_idx on app_public.sessions (therapist_id, scheduled_at);
comment on table app_public.sessions is
  E'@foreignKey (status) references app_public.session_states (name)\nA therapy session booked by a client with a therapist.';
comment on constraint sessions_duration_minutes_range on app_public.sessions is
  'duration_minutes must be between 15 and 240';
comment on constraint sessions_price_kes_positive on app_public.sessions is
  'price_kes must be a positive whole number of shillings';
comment on constraint sessions_client_is_not_therapist on app_public.sessions is
  'the client and the therapist must be different people';
comment on column app_public.sessions.status is 'Where the session is in its state machine (app_public.session_states).';
comment on column app_public.sessions.price_kes is 'The price in whole Kenyan shillings.';

create table app_public.payments (
  id uuid primary key default gen_random_uuid(),
  session_id uuid not null unique references app_public.sessions,
  amount_kes integer not null
    constraint payments_amount_kes_positive check (amount_kes > 0),
  currency text not null default 'KES'
    constraint payments_currency_kes check (currency = 'KES'),
  payer_phone text not null
    constraint payments_payer_phone_format check (payer_phone ~ '^254[17][0-9]{8}$'),
  status text not null default 'pending',
  created_at timestamptz not null default now()
);
comment on table app_public.payments is
  E'@foreignKey (status) references app_public.payment_states (name)\nThe one M-Pesa payment of a session.';
comment on constraint payments_payer_phone_format on app_public.payments is
  'payer_phone must be a Kenyan mobile number written 2547XXXXXXXX or 2541XXXXXXXX';
comment on column app_public.payments.payer_phone is 'The M-Pesa number that pays, as 2547XXXXXXXX or 2541XXXXXXXX.';

create table app_public.video_calls (
  id uuid primary key default gen_random_uuid(),
  session_id uuid not null unique references app_public.sessions,
  status text not null default 'not_started',
  created_at timestamptz not null default now()
);
comment on table app_public.video_calls is
  E'@foreignKey (status) references app_public.video_call_states (name)\nThe one video call of a session.';

create table app_public.session_forms (
  id uuid primary key default gen_random_uuid(),
  session_id uuid not null references app_public.sessions,
  form_key text not null
    constraint session_forms_form_key_format check (form_key ~ '^[a-z][a-z0-9_]{0,62}$'),
  status text not null default 'pending',
  created_at timestamptz not null default now(),
  unique (session_id, form_key)
);
comment on table app_public.session_forms is
  E'@foreignKey (status) references app_public.form_states (name)\nA required intake form of a session (decision D7).';
comment on constraint session_forms_form_key_format on app_public.session_forms is
  'form_key must be lowercase letters, digits and underscores, starting with a letter';
comment on column app_public.session_forms.form_key is 'Which form, e.g. intake or consent; unique within a session.';

-- The required actions the rules raise (app_hidden.payment_state_actions):
-- an outbox that integrations work through.
create table app_public.required_actions (
  id bigint generated always as identity primary key,
  session_id uuid not null references app_public.sessions,
  action text not null,
  entity_type text not null,
  entity_id uuid not null,
  created_at timestamptz not null default now()
);
create index required_actions_session_id_idx on app_public.required_actions (session_id);
comment on table app_public.required_actions is
  'Actions the rules require after a status change, e.g. ALERT_CLIENT_RETRY when a payment fails.';
--! EndIncluded 11_flow_tables.sql
--! Included 12_audit_log.sql
-- The audit log: one row for every status change, by any writer (flow step,
-- DBA, migration). Reason, actor and request id come from transaction-local
-- settings that the API sets (README, "Audit log"):
--   flow.reason      why the change was made (free text);
--   flow.actor       who made it (the API puts the user id and role here);
--   flow.request_id  the API request that made it.
-- Without flow.actor, the actor is the database login (session_user): a DBA's
-- change in psql is signed with the DBA's role. flow.step is set by the flow
-- step functions, so a change made by hand is told apart by step = null.
create table app_public.audit_entries (
  id bigint generated always as identity primary key,
  entity_type text not null,
  entity_id uuid not null,
  session_id uuid not null,
  old_value text,
  new_value text not null,
  step text,
  reason text,
  actor text not null,
  request_id text,
  created_at timestamptz not null default now()
);
create index audit_entries_session_id_idx on app_public.audit_entries (session_id, id);
comment on table app_public.audit_entries is
  'Every status change of a payment, session, video call or form, appended and never changed.';
comment on column app_public.audit_entries.old_value is 'The status before the change; null when the row was created.';
comment on column app_public.audit_entries.step is 'The flow step that made the change; null for a change made directly in SQL.';
comment on column app_public.audit_entries.actor is 'flow.actor, or the database login when it is not set.';
--! EndIncluded 12_audit_log.sql
--! Included 13_error_codes.sql
-- Every error a user can cause, listed once: the code programs act on, our
-- SQLSTATE (class QF), what it means, and an example of its message. Errors
-- are raised only through app_private.raise_error, which reads this table.
insert into app_hidden.error_codes (code, sqlstate, meaning, example) values
  ('INVALID_INITIAL_STATE', 'QFSI1',
   'A new payment, session, video call or form must start in its machine''s initial state.',
   'Invalid session initial state: ready. Allowed: [requested]'),
  ('INVALID_STATE_TRANSITION', 'QFST1',
   'The status change is not a row of the machine''s transition table.',
   'Invalid session transition: paid → in_progress. Allowed: [forms_required, ready, cancelled]'),
  ('FORBIDDEN_TRANSITION', 'QFSF1',
   'The status change is one the reference forbids outright; `reason` says why (PAYMENT_REQUIRED, FORMS_REQUIRED, RETROACTIVE_PAYMENT, RETROACTIVE_CHANGE).',
   'FORBIDDEN TRANSITION: session.requested → session.ready. Reason: PAYMENT_REQUIRED. Allowed: [approved, cancelled]'),
  ('SYNC_VIOLATION', 'QFSY1',
   'At commit, a session''s payment, video call or forms are in states its own state does not allow.',
   'Payment-Session sync violation: payment=confirmed, session=cancelled. Allowed: [refunded, cancelled]'),
  ('UNPAID_ACCESS', 'QFCU1',
   'The video call cannot be joined before the session is paid.',
   'FORBIDDEN: Cannot join video call with pending payment (session=payment_pending)'),
  ('FORMS_INCOMPLETE', 'QFCF1',
   'The video call cannot be joined while a required intake form is incomplete.',
   'FORBIDDEN: Cannot join video call with incomplete forms (session=forms_required)'),
  ('SESSION_CLOSED', 'QFCC1',
   'The video call cannot be joined: the session is over (completed, cancelled or no-show).',
   'FORBIDDEN: Cannot join video call of a closed session (session=completed)'),
  ('NOT_FOUND', 'QFNF1',
   'No session, or form, has the given id.',
   'Session not found: 7d0c3c52-0f44-4d4e-9d0e-2f0e0c1f6a11'),
  ('INVALID_ARGUMENT', 'QFIA1',
   'An argument of a flow step is out of range or unknown.',
   'Invalid argument p_party: visitor. Allowed: [client, therapist]'),
  ('IMMUTABLE_FIELD', 'QFIM1',
   'An id, or the session a row belongs to, never changes.',
   'Immutable field: payments.session_id cannot change'),
  ('DELETE_NOT_ALLOWED', 'QFDL1',
   'Rows of a flow are never deleted or truncated: cancel the session instead.',
   'Delete not allowed: sessions rows are kept; cancel the session instead'),
  ('AUDIT_APPEND_ONLY', 'QFAU1',
   'The audit log only grows: no UPDATE, DELETE or TRUNCATE, not even by its owner.',
   'The audit log is append-only: UPDATE on app_public.audit_entries is not allowed');
--! EndIncluded 13_error_codes.sql
--! Included 14_rules_data.sql
-- The rows of the rules: the reference's tables exactly, plus decisions D1–D7.

insert into app_hidden.decisions (code, gap, decision) values
  ('D1', 'no_show_client is unreachable: no payment state allows it.',
         'Payment confirmed also allows session no_show_client (the client did not come; the payment is kept).'),
  ('D2', 'A video call cannot fail while the session is ready or in_progress, so the failed → waiting_for_participants retry is unusable.',
         'Session ready and in_progress also allow video failed.'),
  ('D3', 'A session whose call failed cannot be completed, cancelled or marked no-show without a fake retry.',
         'Video failed → ended is allowed (the call is abandoned).'),
  ('D4', 'The session-video matrix is silent for requested, approved, payment_pending, paid, forms_required, no_show_client, no_show_therapist.',
         'Before ready the video must be not_started; a no-show session allows not_started or ended; can_join_call is false in all of them.'),
  ('D5', 'The canonical flow moves two entities one after the other, which breaks a cross-state rule between the two statements.',
         'Cross-state rules are checked when the transaction commits (deferred constraint triggers); single-entity transitions are checked at once.'),
  ('D6', 'The forbidden-transition list names transitions that the transition tables already reject.',
         'It is kept as data: it gives those rejections their specific reason code instead of the generic one.'),
  ('D7', 'paid → ready is allowed "if no forms needed", but nothing defines forms.',
         'A session has zero or more required intake forms; it may enter ready only when all are complete, and a video join is refused with FORMS_INCOMPLETE while any is not.');

insert into app_hidden.entity_types (name, position, state_table, entity_table, note, decision) values
  ('payment', 1, 'app_public.payment_states', 'app_public.payments', 'Reference: PAYMENT_STATE MACHINE.', null),
  ('session', 2, 'app_public.session_states', 'app_public.sessions', 'Reference: SESSION STATE MACHINE.', null),
  ('video', 3, 'app_public.video_call_states', 'app_public.video_calls', 'Reference: VIDEO CALL STATE MACHINE.', null),
  ('form', 4, 'app_public.form_states', 'app_public.session_forms', 'Required intake forms: pending until completed.', 'D7');

insert into app_public.payment_states (name, position, is_initial, is_terminal, description, note) values
  ('pending',   1, true,  false, 'Created with the session; nothing asked of the payer yet.', 'Reference: PAYMENT_STATES.PENDING.'),
  ('initiated', 2, false, false, 'The payer has been asked to pay (M-Pesa STK push).', 'Reference: PAYMENT_STATES.INITIATED.'),
  ('confirmed', 3, false, false, 'The provider confirmed the payment.', 'Reference: PAYMENT_STATES.CONFIRMED.'),
  ('failed',    4, false, false, 'The provider reported a failure; the client may retry.', 'Reference: PAYMENT_STATES.FAILED.'),
  ('refunded',  5, false, true,  'The money was returned to the payer.', 'Reference: PAYMENT_STATES.REFUNDED (terminal).'),
  ('cancelled', 6, false, true,  'Abandoned before any money was taken.', 'Reference: PAYMENT_STATES.CANCELLED (terminal).');

insert into app_public.session_states (name, position, is_initial, is_terminal, description, note) values
  ('requested',         1,  true,  false, 'The client asked for a session.', 'Reference: SESSION_STATES.REQUESTED.'),
  ('approved',          2,  false, false, 'The therapist accepted the request.', 'Reference: SESSION_STATES.APPROVED.'),
  ('payment_pending',   3,  false, false, 'A payment is under way.', 'Reference: SESSION_STATES.PAYMENT_PENDING.'),
  ('paid',              4,  false, false, 'The payment is confirmed.', 'Reference: SESSION_STATES.PAID.'),
  ('forms_required',    5,  false, false, 'Paid; waiting for required intake forms.', 'Reference: SESSION_STATES.FORMS_REQUIRED.'),
  ('ready',             6,  false, false, 'Paid and every form complete: the call may be joined.', 'Reference: SESSION_STATES.READY.'),
  ('in_progress',       7,  false, false, 'The session is taking place.', 'Reference: SESSION_STATES.IN_PROGRESS.'),
  ('completed',         8,  false, true,  'The session took place.', 'Reference: SESSION_STATES.COMPLETED (terminal).'),
  ('cancelled',         9,  false, true,  'The session was cancelled.', 'Reference: SESSION_STATES.CANCELLED (terminal).'),
  ('no_show_client',    10, false, true,  'The client did not come.', 'Reference: SESSION_STATES.NO_SHOW_CLIENT (terminal).'),
  ('no_show_therapist', 11, false, true,  'The therapist did not come.', 'Reference: SESSION_STATES.NO_SHOW_THERAPIST (terminal).');

insert into app_public.video_call_states (name, position, is_initial, is_terminal, description, note) values
  ('not_started',              1, true,  false, 'Nobody has joined yet.', 'Reference: VIDEO_STATES.NOT_STARTED.'),
  ('waiting_for_participants', 2, false, false, 'Someone joined; waiting for the other party.', 'Reference: VIDEO_STATES.WAITING_FOR_PARTICIPANTS.'),
  ('active',                   3, false, false, 'The call is live.', 'Reference: VIDEO_STATES.ACTIVE.'),
  ('ended',                    4, false, true,  'The call is over.', 'Reference: VIDEO_STATES.ENDED (terminal).'),
  ('failed',                   5, false, false, 'The call failed; it may be retried or abandoned.', 'Reference: VIDEO_STATES.FAILED.');

insert into app_public.form_states (name, position, is_initial, is_terminal, description, note, decision) values
  ('pending',   1, true,  false, 'Not filled in yet.', 'A required form starts incomplete.', 'D7'),
  ('completed', 2, false, true,  'Filled in.', 'Completion is final: a completed form never becomes incomplete again.', 'D7');

insert into app_hidden.transitions (entity_type, from_state, to_state, position, note, decision) values
  ('payment', 'pending',   'initiated', 1, 'Reference: PAYMENT_TRANSITIONS.', null),
  ('payment', 'pending',   'cancelled', 2, 'Reference: PAYMENT_TRANSITIONS.', null),
  ('payment', 'initiated', 'confirmed', 1, 'Reference: PAYMENT_TRANSITIONS.', null),
  ('payment', 'initiated', 'failed',    2, 'Reference: PAYMENT_TRANSITIONS.', null),
  ('payment', 'initiated', 'cancelled', 3, 'Reference: PAYMENT_TRANSITIONS.', null),
  ('payment', 'confirmed', 'refunded',  1, 'Reference: PAYMENT_TRANSITIONS.', null),
  ('payment', 'failed',    'initiated', 1, 'Reference: PAYMENT_TRANSITIONS (retry).', null),
  ('payment', 'failed',    'cancelled', 2, 'Reference: PAYMENT_TRANSITIONS.', null),

  ('session', 'requested',       'approved',          1, 'Reference: SESSION_TRANSITIONS.', null),
  ('session', 'requested',       'cancelled',         2, 'Reference: SESSION_TRANSITIONS.', null),
  ('session', 'approved',        'payment_pending',   1, 'Reference: SESSION_TRANSITIONS.', null),
  ('session', 'approved',        'cancelled',         2, 'Reference: SESSION_TRANSITIONS.', null),
  ('session', 'payment_pending', 'paid',              1, 'Reference: SESSION_TRANSITIONS.', null),
  ('session', 'payment_pending', 'cancelled',         2, 'Reference: SESSION_TRANSITIONS.', null),
  ('session', 'paid',            'forms_required',    1, 'Reference: SESSION_TRANSITIONS.', null),
  ('session', 'paid',            'ready',             2, 'Reference: SESSION_TRANSITIONS (if no forms needed; D7).', null),
  ('session', 'paid',            'cancelled',         3, 'Reference: SESSION_TRANSITIONS.', null),
  ('session', 'forms_required',  'ready',             1, 'Reference: SESSION_TRANSITIONS.', null),
  ('session', 'forms_required',  'cancelled',         2, 'Reference: SESSION_TRANSITIONS.', null),
  ('session', 'ready',           'in_progress',       1, 'Reference: SESSION_TRANSITIONS.', null),
  ('session', 'ready',           'no_show_client',    2, 'Reference: SESSION_TRANSITIONS.', null),
  ('session', 'ready',           'no_show_therapist', 3, 'Reference: SESSION_TRANSITIONS.', null),
  ('session', 'ready',           'cancelled',         4, 'Reference: SESSION_TRANSITIONS.', null),
  ('session', 'in_progress',     'completed',         1, 'Reference: SESSION_TRANSITIONS.', null),
  ('session', 'in_progress',     'cancelled',         2, 'Reference: SESSION_TRANSITIONS (mid-session cancellation).', null),

  ('video', 'not_started',              'waiting_for_participants', 1, 'Reference: VIDEO_TRANSITIONS.', null),
  ('video', 'waiting_for_participants', 'active',                   1, 'Reference: VIDEO_TRANSITIONS.', null),
  ('video', 'waiting_for_participants', 'failed',                   2, 'Reference: VIDEO_TRANSITIONS.', null),
  ('video', 'waiting_for_participants', 'ended',                    3, 'Reference: VIDEO_TRANSITIONS (if cancelled before starting).', null),
  ('video', 'active',                   'ended',                    1, 'Reference: VIDEO_TRANSITIONS.', null),
  ('video', 'active',                   'failed',                   2, 'Reference: VIDEO_TRANSITIONS.', null),
  ('video', 'failed',                   'waiting_for_participants', 1, 'Reference: VIDEO_TRANSITIONS (retry).', null),
  ('video', 'failed',                   'ended',                    2, 'The failed call is abandoned, so its session can be completed, cancelled or marked no-show.', 'D3'),

  ('form', 'pending', 'completed', 1, 'A required form is filled in; completion is final.', 'D7');

insert into app_hidden.reason_codes (code, meaning) values
  ('PAYMENT_REQUIRED',    'The session cannot move on before it is paid.'),
  ('FORMS_REQUIRED',      'The session cannot move on before every required intake form is complete.'),
  ('RETROACTIVE_PAYMENT', 'A finished session cannot be reopened for payment.'),
  ('RETROACTIVE_CHANGE',  'A confirmed payment cannot be taken back to an earlier state.');

insert into app_hidden.forbidden_transitions (entity_type, from_state, to_state, reason_code, note, decision) values
  ('session', 'requested', 'ready',           'PAYMENT_REQUIRED',    'Reference: FORBIDDEN_TRANSITIONS (payment bypassing).', 'D6'),
  ('session', 'approved',  'in_progress',     'PAYMENT_REQUIRED',    'Reference: FORBIDDEN_TRANSITIONS (payment bypassing).', 'D6'),
  ('session', 'paid',      'in_progress',     'FORMS_REQUIRED',      'Reference: FORBIDDEN_TRANSITIONS (form bypassing).', 'D6'),
  ('session', 'completed', 'payment_pending', 'RETROACTIVE_PAYMENT', 'Reference: FORBIDDEN_TRANSITIONS (retroactive changes).', 'D6'),
  ('payment', 'confirmed', 'pending',         'RETROACTIVE_CHANGE',  'Reference: FORBIDDEN_TRANSITIONS (retroactive changes).', 'D6');

insert into app_hidden.payment_session_sync (payment_state, session_state, note, decision) values
  ('pending',   'requested',         'Reference: PAYMENT_SESSION_SYNC_RULES.', null),
  ('pending',   'approved',          'Reference: PAYMENT_SESSION_SYNC_RULES.', null),
  ('initiated', 'payment_pending',   'Reference: PAYMENT_SESSION_SYNC_RULES.', null),
  ('confirmed', 'paid',              'Reference: PAYMENT_SESSION_SYNC_RULES.', null),
  ('confirmed', 'forms_required',    'Reference: PAYMENT_SESSION_SYNC_RULES.', null),
  ('confirmed', 'ready',             'Reference: PAYMENT_SESSION_SYNC_RULES.', null),
  ('confirmed', 'in_progress',       'Reference: PAYMENT_SESSION_SYNC_RULES.', null),
  ('confirmed', 'completed',         'Reference: PAYMENT_SESSION_SYNC_RULES.', null),
  ('confirmed', 'no_show_client',    'The client did not come: the payment is kept (otherwise no_show_client is unreachable).', 'D1'),
  ('failed',    'payment_pending',   'Reference: PAYMENT_SESSION_SYNC_RULES.', null),
  ('failed',    'cancelled',         'Reference: PAYMENT_SESSION_SYNC_RULES.', null),
  ('refunded',  'cancelled',         'Reference: PAYMENT_SESSION_SYNC_RULES.', null),
  ('refunded',  'no_show_therapist', 'Reference: PAYMENT_SESSION_SYNC_RULES.', null),
  ('cancelled', 'cancelled',         'Reference: PAYMENT_SESSION_SYNC_RULES.', null);

insert into app_hidden.payment_state_actions (payment_state, action, note, decision) values
  ('failed', 'ALERT_CLIENT_RETRY', 'Reference: PAYMENT_SESSION_SYNC_RULES.failed.requiredActions.', null);

insert into app_hidden.session_video_sync (session_state, video_state, note, decision) values
  ('requested',         'not_started',              'No call before the session is ready.', 'D4'),
  ('approved',          'not_started',              'No call before the session is ready.', 'D4'),
  ('payment_pending',   'not_started',              'No call before the session is ready.', 'D4'),
  ('paid',              'not_started',              'No call before the session is ready.', 'D4'),
  ('forms_required',    'not_started',              'No call before the session is ready.', 'D4'),
  ('ready',             'not_started',              'Reference: SESSION_VIDEO_SYNC_RULES.', null),
  ('ready',             'waiting_for_participants', 'Reference: SESSION_VIDEO_SYNC_RULES.', null),
  ('ready',             'failed',                   'A call may fail before the session starts, and be retried.', 'D2'),
  ('in_progress',       'waiting_for_participants', 'Reference: SESSION_VIDEO_SYNC_RULES.', null),
  ('in_progress',       'active',                   'Reference: SESSION_VIDEO_SYNC_RULES.', null),
  ('in_progress',       'failed',                   'A call may fail during the session, and be retried.', 'D2'),
  ('completed',         'ended',                    'Reference: SESSION_VIDEO_SYNC_RULES.', null),
  ('cancelled',         'not_started',              'Reference: SESSION_VIDEO_SYNC_RULES.', null),
  ('cancelled',         'ended',                    'Reference: SESSION_VIDEO_SYNC_RULES.', null),
  ('no_show_client',    'not_started',              'A no-show session''s call never started or is over.', 'D4'),
  ('no_show_client',    'ended',                    'A no-show session''s call never started or is over.', 'D4'),
  ('no_show_therapist', 'not_started',              'A no-show session''s call never started or is over.', 'D4'),
  ('no_show_therapist', 'ended',                    'A no-show session''s call never started or is over.', 'D4');

insert into app_hidden.session_call_access (session_state, can_join_call, refusal_code, refusal_message, note, decision) values
  ('requested',         false, 'UNPAID_ACCESS',    'Cannot join video call with pending payment', 'Not paid yet.', 'D4'),
  ('approved',          false, 'UNPAID_ACCESS',    'Cannot join video call with pending payment', 'Not paid yet.', 'D4'),
  ('payment_pending',   false, 'UNPAID_ACCESS',    'Cannot join video call with pending payment', 'Reference: FORBIDDEN_TRANSITIONS video.join + session.payment_pending.', 'D6'),
  ('paid',              false, 'FORMS_INCOMPLETE', 'Cannot join video call with incomplete forms', 'Paid, but the forms are not yet checked.', 'D4'),
  ('forms_required',    false, 'FORMS_INCOMPLETE', 'Cannot join video call with incomplete forms', 'Reference: FORBIDDEN_TRANSITIONS video.join + forms.incomplete.', 'D6'),
  ('ready',             true,  null, null, 'Reference: SESSION_VIDEO_SYNC_RULES.ready.canJoinCall.', null),
  ('in_progress',       true,  null, null, 'Reference: SESSION_VIDEO_SYNC_RULES.in_progress.canJoinCall.', null),
  ('completed',         false, 'SESSION_CLOSED',   'Cannot join video call of a closed session', 'Reference: SESSION_VIDEO_SYNC_RULES.completed.canJoinCall.', null),
  ('cancelled',         false, 'SESSION_CLOSED',   'Cannot join video call of a closed session', 'Reference: SESSION_VIDEO_SYNC_RULES.cancelled.canJoinCall.', null),
  ('no_show_client',    false, 'SESSION_CLOSED',   'Cannot join video call of a closed session', 'A no-show session is over.', 'D4'),
  ('no_show_therapist', false, 'SESSION_CLOSED',   'Cannot join video call of a closed session', 'A no-show session is over.', 'D4');

insert into app_hidden.session_form_requirements (session_state, forms_complete_required, note, decision) values
  ('requested',         false, 'Forms may be filled in at any time before the session is ready.', 'D7'),
  ('approved',          false, 'Forms may be filled in at any time before the session is ready.', 'D7'),
  ('payment_pending',   false, 'Forms may be filled in at any time before the session is ready.', 'D7'),
  ('paid',              false, 'Paid: the session moves on to forms_required or ready.', 'D7'),
  ('forms_required',    false, 'Waiting for the forms.', 'D7'),
  ('ready',             true,  'Ready only when every required form is complete.', 'D7'),
  ('in_progress',       true,  'Reached only from ready.', 'D7'),
  ('completed',         true,  'Reached only from in_progress.', 'D7'),
  ('cancelled',         false, 'A cancelled session needs no forms.', 'D7'),
  ('no_show_client',    true,  'Reached only from ready.', 'D7'),
  ('no_show_therapist', true,  'Reached only from ready.', 'D7');
--! EndIncluded 14_rules_data.sql
--! Included 15_compiled_rules.sql
-- The rules tables, compiled. Every status change asks the rules a handful of
-- yes/no questions (is from → to a transition? is this payment state allowed
-- with that session state? …). Asked as queries, each costs an executor
-- start-up: several times the cost of the UPDATE being checked. So each
-- question is also a small SQL function whose body holds the answer as a
-- constant, generated from the tables; PostgreSQL inlines it into the
-- trigger's expressions, where it costs well under a microsecond.
--
-- The tables stay the only place a rule is written: compile_rules()
-- regenerates every function from them, and a trigger on every rules table
-- runs it in the same transaction as any change to the rules. (A test checks
-- each function against its table for every combination of states.)

create or replace function app_private.compile_rules() returns void
language plpgsql
as $$
declare
  v_pairs text[];
  v_actions text;
begin
  -- is_initial_state(entity_type, state)
  select coalesce(array_agg(s.entity_type || ':' || s.name order by 1), '{}') into v_pairs
  from app_hidden.states s where s.is_initial;
  execute format($f$
    create or replace function app_private.is_initial_state(entity_type text, state text) returns boolean
    language sql immutable parallel safe
    return (entity_type || ':' || state) = any (%L::text[])$f$, v_pairs);

  -- is_transition(entity_type, from_state, to_state)
  select coalesce(array_agg(t.entity_type || ':' || t.from_state || '>' || t.to_state order by 1), '{}') into v_pairs
  from app_hidden.transitions t;
  execute format($f$
    create or replace function app_private.is_transition(entity_type text, from_state text, to_state text) returns boolean
    language sql immutable parallel safe
    return (entity_type || ':' || from_state || '>' || to_state) = any (%L::text[])$f$, v_pairs);

  -- payment_session_in_sync(payment_state, session_state)
  select coalesce(array_agg(r.payment_state || '>' || r.session_state order by 1), '{}') into v_pairs
  from app_hidden.payment_session_sync r;
  execute format($f$
    create or replace function app_private.payment_session_in_sync(payment_state text, session_state text) returns boolean
    language sql immutable parallel safe
    return (payment_state || '>' || session_state) = any (%L::text[])$f$, v_pairs);

  -- session_video_in_sync(session_state, video_state)
  select coalesce(array_agg(r.session_state || '>' || r.video_state order by 1), '{}') into v_pairs
  from app_hidden.session_video_sync r;
  execute format($f$
    create or replace function app_private.session_video_in_sync(session_state text, video_state text) returns boolean
    language sql immutable parallel safe
    return (session_state || '>' || video_state) = any (%L::text[])$f$, v_pairs);

  -- forms_complete_required(session_state)
  select coalesce(array_agg(r.session_state order by 1), '{}') into v_pairs
  from app_hidden.session_form_requirements r where r.forms_complete_required;
  execute format($f$
    create or replace function app_private.forms_complete_required(session_state text) returns boolean
    language sql immutable parallel safe
    return session_state = any (%L::text[])$f$, v_pairs);

  -- payment_actions(payment_state): the required actions a payment state raises, or null
  select string_agg(format('when %L then %L::text[]', a.payment_state, a.actions), ' ' order by a.payment_state)
    into v_actions
  from (select payment_state, array_agg(action order by action) as actions
        from app_hidden.payment_state_actions group by payment_state) a;
  execute format($f$
    create or replace function app_private.payment_actions(payment_state text) returns text[]
    language sql immutable parallel safe
    return %s$f$,
    case when v_actions is null then 'null::text[]' else format('case payment_state %s end', v_actions) end);
end;
$$;
comment on function app_private.compile_rules() is
  'Regenerates the compiled rule functions (is_transition, …) from the rules tables.';

create or replace function app_private.tg_rules__compile() returns trigger
language plpgsql
as $$
begin
  perform app_private.compile_rules();
  return null;
end;
$$;

do $$
declare
  v_table text;
begin
  foreach v_table in array array[
    'app_public.payment_states', 'app_public.session_states', 'app_public.video_call_states', 'app_public.form_states',
    'app_hidden.transitions', 'app_hidden.payment_session_sync', 'app_hidden.session_video_sync',
    'app_hidden.session_form_requirements', 'app_hidden.payment_state_actions'
  ] loop
    execute format(
      'create or replace trigger _900_compile_rules after insert or update or delete or truncate on %s
         for each statement execute function app_private.tg_rules__compile()', v_table);
  end loop;
end;
$$;

-- Compile the rules as they stand.
select app_private.compile_rules();
--! EndIncluded 15_compiled_rules.sql
--! Included 30_errors.sql
-- Every refusal goes through raise_error, so that each carries a code listed
-- in app_hidden.error_codes, its SQLSTATE, a message in the reference's
-- words, and a machine-readable detail (JSON: the code, the entity, and the
-- allowed alternatives), which the API passes on to its clients.
create or replace function app_private.raise_error(code text, message text, detail jsonb default '{}', hint text default null)
returns void
language plpgsql
as $$
declare
  v_sqlstate text;
begin
  select e.sqlstate into v_sqlstate from app_hidden.error_codes e where e.code = raise_error.code;
  if v_sqlstate is null then
    raise exception 'raise_error: unknown error code %', raise_error.code;
  end if;
  if raise_error.hint is null then
    raise exception using
      errcode = v_sqlstate,
      message = raise_error.message,
      detail = (jsonb_build_object('code', raise_error.code) || raise_error.detail)::text;
  end if;
  raise exception using
    errcode = v_sqlstate,
    message = raise_error.message,
    detail = (jsonb_build_object('code', raise_error.code) || raise_error.detail)::text,
    hint = raise_error.hint;
end;
$$;
comment on function app_private.raise_error(text, text, jsonb, text) is
  'Raises one of the errors of app_hidden.error_codes with its SQLSTATE; detail is JSON.';
--! EndIncluded 30_errors.sql
--! Included 31_transition_rules.sql
-- Single-entity rules: a new row starts in its machine's initial state, and
-- every status change is a row of app_hidden.transitions. A refused change
-- names the allowed alternatives. (The trigger that applies them on every
-- write is in 34_status_change_trigger.sql.)

-- Whether from → to is allowed for an entity, and if not, the error the
-- triggers raise for it. The triggers, the DBA's explain_entity and the API's
-- validation queries all answer from here.
create or replace function app_hidden.check_transition(entity_type text, from_state text, to_state text)
returns table (allowed boolean, code text, reason text, message text, allowed_states text[])
language sql
stable
as $$
  select
    ok,
    case when ok then null when f.reason_code is not null then 'FORBIDDEN_TRANSITION' else 'INVALID_STATE_TRANSITION' end,
    case when ok then null else f.reason_code end,
    case
      when ok then null
      when f.reason_code is not null then
        format('FORBIDDEN TRANSITION: %1$s.%2$s → %1$s.%3$s. Reason: %4$s. Allowed: [%5$s]',
               check_transition.entity_type, check_transition.from_state, check_transition.to_state,
               f.reason_code, array_to_string(a.states, ', '))
      else
        format('Invalid %s transition: %s → %s. Allowed: [%s]',
               check_transition.entity_type, check_transition.from_state, check_transition.to_state,
               array_to_string(a.states, ', '))
    end,
    a.states
  from (
    select coalesce(array_agg(t.to_state order by t.position), '{}') as states
    from app_hidden.transitions t
    where t.entity_type = check_transition.entity_type and t.from_state = check_transition.from_state
  ) a
  cross join lateral (select check_transition.to_state = any (a.states) as ok) o
  left join app_hidden.forbidden_transitions f
    on f.entity_type = check_transition.entity_type
   and f.from_state = check_transition.from_state
   and f.to_state = check_transition.to_state;
$$;
comment on function app_hidden.check_transition(text, text, text) is
  'Whether an entity may change from one state to another; if not, the error code, reason and message.';

-- The open (incomplete) required forms of a session, by key.
create or replace function app_hidden.open_forms(session_id uuid)
returns text[]
language sql
stable
as $$
  select coalesce(array_agg(f.form_key order by f.form_key), '{}')
  from app_public.session_forms f
  where f.session_id = open_forms.session_id and f.status <> 'completed';
$$;

-- Ids, and the session a row belongs to, never change: the rules and the
-- audit log are kept per session.
create or replace function app_private.tg__immutable_keys() returns trigger
language plpgsql
as $$
begin
  perform app_private.raise_error(
    'IMMUTABLE_FIELD',
    format('Immutable field: %s.%s cannot change', tg_table_name,
           case when to_jsonb(new) ->> 'id' is distinct from to_jsonb(old) ->> 'id' then 'id' else 'session_id' end),
    jsonb_build_object('table', tg_table_name));
  return null;
end;
$$;

-- Flow rows are never deleted: a session is cancelled, and its history stays.
create or replace function app_private.tg__refuse_delete() returns trigger
language plpgsql
as $$
begin
  perform app_private.raise_error(
    'DELETE_NOT_ALLOWED',
    format('Delete not allowed: %s rows are kept; cancel the session instead', tg_table_name),
    jsonb_build_object('table', tg_table_name, 'operation', tg_op));
  return null;
end;
$$;
--! EndIncluded 31_transition_rules.sql
--! Included 32_audit_append_only.sql
-- The audit log only grows. Privileges alone would not stop the table's
-- owner (who runs the migrations), so triggers refuse UPDATE, DELETE and
-- TRUNCATE to everybody. (A superuser can still disable triggers; the
-- README says how that is detected.)
create or replace function app_private.tg_audit_entries__append_only() returns trigger
language plpgsql
as $$
begin
  perform app_private.raise_error(
    'AUDIT_APPEND_ONLY',
    format('The audit log is append-only: %s on %s.%s is not allowed', tg_op, tg_table_schema, tg_table_name),
    jsonb_build_object('table', tg_table_name, 'operation', tg_op));
  return null;
end;
$$;
create or replace trigger _100_append_only before update or delete on app_public.audit_entries
  for each row execute function app_private.tg_audit_entries__append_only();
create or replace trigger _110_append_only before truncate on app_public.audit_entries
  for each statement execute function app_private.tg_audit_entries__append_only();
--! EndIncluded 32_audit_append_only.sql
--! Included 33_cross_state_sync.sql
-- Cross-state rules (payment ↔ session, session ↔ video call, session ↔
-- forms) must hold when a transaction commits (decision D5): the entities of
-- one flow step may change in any order inside it. flow_violations says,
-- from the rules tables, which rules a session breaks and why: the
-- commit-time check raises its first answer, and the DBA's integrity view
-- lists them all. (The status-change trigger asks the same tables through
-- their compiled functions, 15_compiled_rules.sql.)

-- The rules a session breaks when its entities are in the given states. The
-- forms rule reads the session's forms as they are.
create or replace function app_hidden.flow_violations(session_id uuid, session_state text, payment_state text, video_state text)
returns table (rule text, message text, detail jsonb)
language sql
stable
as $$
  select 'payment_missing',
         format('Flow incomplete: session %s has no payment', flow_violations.session_id),
         jsonb_build_object('session', flow_violations.session_state)
  where flow_violations.payment_state is null
  union all
  select 'video_missing',
         format('Flow incomplete: session %s has no video call', flow_violations.session_id),
         jsonb_build_object('session', flow_violations.session_state)
  where flow_violations.video_state is null
  union all
  select 'payment_session',
         format('Payment-Session sync violation: payment=%s, session=%s. Allowed: session in [%s] or payment in [%s]',
                flow_violations.payment_state, flow_violations.session_state,
                (select string_agg(r.session_state, ', ' order by st.position)
                 from app_hidden.payment_session_sync r join app_public.session_states st on st.name = r.session_state
                 where r.payment_state = flow_violations.payment_state),
                (select string_agg(r.payment_state, ', ' order by st.position)
                 from app_hidden.payment_session_sync r join app_public.payment_states st on st.name = r.payment_state
                 where r.session_state = flow_violations.session_state)),
         jsonb_build_object('payment', flow_violations.payment_state, 'session', flow_violations.session_state)
  where flow_violations.payment_state is not null and not exists (
    select 1 from app_hidden.payment_session_sync r
    where r.payment_state = flow_violations.payment_state and r.session_state = flow_violations.session_state)
  union all
  select 'session_video',
         format('Session-Video sync violation: session=%s, video=%s. Allowed: video in [%s] or session in [%s]',
                flow_violations.session_state, flow_violations.video_state,
                (select string_agg(r.video_state, ', ' order by st.position)
                 from app_hidden.session_video_sync r join app_public.video_call_states st on st.name = r.video_state
                 where r.session_state = flow_violations.session_state),
                (select string_agg(r.session_state, ', ' order by st.position)
                 from app_hidden.session_video_sync r join app_public.session_states st on st.name = r.session_state
                 where r.video_state = flow_violations.video_state)),
         jsonb_build_object('session', flow_violations.session_state, 'video', flow_violations.video_state)
  where flow_violations.video_state is not null and not exists (
    select 1 from app_hidden.session_video_sync r
    where r.session_state = flow_violations.session_state and r.video_state = flow_violations.video_state)
  union all
  select 'session_forms',
         format('Session-Forms sync violation: session=%s with incomplete forms [%s]',
                flow_violations.session_state, array_to_string(app_hidden.open_forms(flow_violations.session_id), ', ')),
         jsonb_build_object('session', flow_violations.session_state,
                            'incompleteForms', to_jsonb(app_hidden.open_forms(flow_violations.session_id)))
  where exists (
    select 1 from app_hidden.session_form_requirements r
    where r.session_state = flow_violations.session_state and r.forms_complete_required)
    and exists (
      select 1 from app_public.session_forms f
      where f.session_id = flow_violations.session_id and f.status <> 'completed');
$$;
comment on function app_hidden.flow_violations(uuid, text, text, text) is
  'The cross-state rules a session breaks when its session, payment and video call are in the given states.';

-- The rules a session breaks as it is now.
create or replace function app_hidden.session_violations(id uuid)
returns table (session_id uuid, rule text, message text, detail jsonb)
language sql
stable
as $$
  select s.id, v.rule, v.message, v.detail
  from app_public.sessions s
  left join app_public.payments p on p.session_id = s.id
  left join app_public.video_calls c on c.session_id = s.id
  cross join lateral app_hidden.flow_violations(s.id, s.status, p.status, c.status) v
  where s.id = session_violations.id;
$$;
comment on function app_hidden.session_violations(uuid) is
  'Every cross-state rule that the session''s current states break; none on a healthy database.';


-- For DBAs: every session whose current states break a rule, and every flow
-- row whose session is missing or whose status is no state of its machine.
-- Data loaded with triggers off (session_replication_role = replica), or a
-- rule changed after the fact, shows up here. Empty on a healthy database.
create or replace view app_hidden.integrity_violations as
  select v.session_id, v.rule, v.message, v.detail
  from app_public.sessions s
  cross join lateral app_hidden.session_violations(s.id) v
  union all
  select x.session_id, 'orphan_' || x.entity_type,
         format('%s %s belongs to a session that does not exist: %s', x.entity_type, x.id, x.session_id),
         jsonb_build_object('entity', x.entity_type, 'id', x.id)
  from (
    select 'payment' as entity_type, p.id, p.session_id from app_public.payments p
    union all select 'video', v.id, v.session_id from app_public.video_calls v
    union all select 'form', f.id, f.session_id from app_public.session_forms f
  ) x
  where not exists (select 1 from app_public.sessions s where s.id = x.session_id)
  union all
  select x.session_id, 'unknown_state',
         format('%s %s has status %s, which is no %s state', x.entity_type, x.id, x.status, x.entity_type),
         jsonb_build_object('entity', x.entity_type, 'id', x.id, 'status', x.status)
  from (
    select 'session' as entity_type, s.id, s.id as session_id, s.status from app_public.sessions s
    union all select 'payment', p.id, p.session_id, p.status from app_public.payments p
    union all select 'video', v.id, v.session_id, v.status from app_public.video_calls v
    union all select 'form', f.id, f.session_id, f.status from app_public.session_forms f
  ) x
  where not exists (select 1 from app_hidden.states st where st.entity_type = x.entity_type and st.name = x.status);
comment on view app_hidden.integrity_violations is
  'Every session (or flow row) whose current states break a rule. Empty on a healthy database.';
--! EndIncluded 33_cross_state_sync.sql
--! Included 34_status_change_trigger.sql
-- The trigger that applies every rule on every write, by any writer (flow
-- step, GraphQL, a DBA's UPDATE, as owner or superuser).
--
-- On each new row and each UPDATE that sets a status (even to the same value:
-- as in the reference, paid → paid is no transition), one BEFORE row trigger:
--   1. checks the initial state, or that old → new is a transition (at once,
--      D5), and refuses entering a state that needs every form complete
--      while one is open (FORMS_REQUIRED, D7);
--   2. raises the new state's required actions (payment_state_actions);
--   3. locks the session row (when the row is not the session itself), so
--      that two transactions changing one session's entities queue up, and
--      judges whether the session's states (session, payment, call), with
--      this change, stand in both cross-state tables; when they do not, it
--      queues the commit-time check;
--   4. appends the audit entry.
-- It asks the rules through their compiled functions (15_compiled_rules.sql),
-- and runs one query: a status change is the hot path
-- (bench/status-changes.ts). (OLD is null for an INSERT, so old_value too.)
--
-- Why the commit-time check need not run for every change: after the last
-- change a transaction makes to a session's entities, the session is in the
-- state that change was judged in. If that state breaks a rule, that change
-- queued the check, which runs at commit. Intermediate states may break rules
-- (D5); the check they queue passes once the step's other entities have
-- moved. And when the transaction's last change left a session in sync, the
-- checks queued earlier for it have nothing left to find, and are skipped.
-- Forms: a session in a state that needs its forms complete has none open
-- (it could not have entered it otherwise); a form row cannot judge the form
-- it adds, so it always queues the check and turns the skipping off.

create or replace function app_private.tg__status_change() returns trigger
language plpgsql
as $$
declare
  v_entity text := tg_argv[0];
  v_session_id uuid;
  v_check record;
  v_open_forms text[];
  v_actions text[];
  v_session_state text;
  v_payment_state text;
  v_video_state text;
  v_in_sync boolean;
begin
  -- 1. The machine's own rules.
  if tg_op = 'INSERT' then
    if not app_private.is_initial_state(v_entity, new.status) then
      perform app_private.raise_error(
        'INVALID_INITIAL_STATE',
        format('Invalid %s initial state: %s. Allowed: [%s]', v_entity, new.status,
               (select string_agg(s.name, ', ') from app_hidden.states s where s.entity_type = v_entity and s.is_initial)),
        jsonb_build_object('entity', v_entity, 'id', new.id, 'to', new.status,
                           'allowed', (select jsonb_agg(s.name) from app_hidden.states s where s.entity_type = v_entity and s.is_initial)));
    end if;
  else
    if not app_private.is_transition(v_entity, old.status, new.status) then
      select * into v_check from app_hidden.check_transition(v_entity, old.status, new.status);
      perform app_private.raise_error(
        v_check.code, v_check.message,
        jsonb_build_object('entity', v_entity, 'id', new.id, 'from', old.status, 'to', new.status,
                           'reason', v_check.reason, 'allowed', to_jsonb(v_check.allowed_states)));
    end if;
    -- D7: a session enters ready only with every required form complete.
    if v_entity = 'session'
       and app_private.forms_complete_required(new.status)
       and not app_private.forms_complete_required(old.status) then
      v_open_forms := app_hidden.open_forms(new.id);
      if cardinality(v_open_forms) > 0 then
        perform app_private.raise_error(
          'FORBIDDEN_TRANSITION',
          format('FORBIDDEN TRANSITION: session.%s → session.%s. Reason: FORMS_REQUIRED. Incomplete forms: [%s]',
                 old.status, new.status, array_to_string(v_open_forms, ', ')),
          jsonb_build_object('entity', 'session', 'id', new.id, 'from', old.status, 'to', new.status,
                             'reason', 'FORMS_REQUIRED', 'incompleteForms', to_jsonb(v_open_forms)));
      end if;
    end if;
  end if;

  -- 2. Required actions (only payment states have any).
  if v_entity = 'payment' then
    v_actions := app_private.payment_actions(new.status);
    if v_actions is not null then
      insert into app_public.required_actions (session_id, action, entity_type, entity_id)
      select new.session_id, a, v_entity, new.id from unnest(v_actions) a;
    end if;
  end if;

  -- 3 and 4, in one statement: append the audit entry, and read the
  -- session's other states (locking the session row when this row is not it).
  if v_entity = 'session' then
    v_session_id := new.id;
    with audit as (
      insert into app_public.audit_entries
        (entity_type, entity_id, session_id, old_value, new_value, step, reason, actor, request_id)
      values (v_entity, new.id, new.id, old.status, new.status,
              nullif(current_setting('flow.step', true), ''), nullif(current_setting('flow.reason', true), ''),
              coalesce(nullif(current_setting('flow.actor', true), ''), session_user),
              nullif(current_setting('flow.request_id', true), ''))
    )
    select p.status, c.status into v_payment_state, v_video_state
    from app_public.payments p, app_public.video_calls c
    where p.session_id = new.id and c.session_id = new.id;
    v_in_sync := found
      and app_private.payment_session_in_sync(v_payment_state, new.status)
      and app_private.session_video_in_sync(new.status, v_video_state);
  else
    v_session_id := new.session_id;
    with audit as (
      insert into app_public.audit_entries
        (entity_type, entity_id, session_id, old_value, new_value, step, reason, actor, request_id)
      values (v_entity, new.id, new.session_id, old.status, new.status,
              nullif(current_setting('flow.step', true), ''), nullif(current_setting('flow.reason', true), ''),
              coalesce(nullif(current_setting('flow.actor', true), ''), session_user),
              nullif(current_setting('flow.request_id', true), ''))
    )
    select s.status,
           case when v_entity = 'payment' then new.status else p.status end,
           case when v_entity = 'video' then new.status else c.status end
      into v_session_state, v_payment_state, v_video_state
    from app_public.sessions s
    left join app_public.payments p on p.session_id = s.id
    left join app_public.video_calls c on c.session_id = s.id
    where s.id = new.session_id
    for no key update of s;
    -- A form row cannot judge the form it adds: it always queues the check,
    -- and the check then runs whatever comes later in the transaction.
    if v_entity = 'form' then
      perform set_config('flow.forms_changed', 'on', true);
    end if;
    v_in_sync := v_entity <> 'form'
      and app_private.payment_session_in_sync(v_payment_state, v_session_state)
      and app_private.session_video_in_sync(v_session_state, v_video_state);
  end if;
  -- The judgement, for the commit-time trigger: its WHEN queues the check
  -- when this change leaves the session out of sync ('!'); at commit, the
  -- check is skipped when the last change of the transaction left this very
  -- session in sync. (A transaction-local setting: a rolled-back savepoint
  -- restores it along with the change it judged.)
  perform set_config('flow.sync', case when v_in_sync then v_session_id::text else '!' end, true);
  return new;
end;
$$;
comment on function app_private.tg__status_change() is
  'Applies the rules to a new row or a status change, queues the commit-time check when needed, and audits it.';

-- The commit-time check (TG_ARGV[0] is the entity type): the session as it is
-- when the transaction commits must break no rule; else the first one
-- flow_violations names is raised. Skipped when the transaction's last change
-- left this session in sync (see above); the compiled rules answer the usual
-- case.
create or replace function app_private.tg__check_flow_sync() returns trigger
language plpgsql
as $$
declare
  v_session_id uuid;
  v_flow record;
  v_violation record;
begin
  if tg_argv[0] = 'session' then
    v_session_id := new.id;
  else
    v_session_id := new.session_id;
  end if;
  if current_setting('flow.sync', true) = v_session_id::text
     and current_setting('flow.forms_changed', true) is distinct from 'on' then
    return null;
  end if;
  select s.status as session_state, p.status as payment_state, c.status as video_state into v_flow
  from app_public.sessions s
  left join app_public.payments p on p.session_id = s.id
  left join app_public.video_calls c on c.session_id = s.id
  where s.id = v_session_id;
  if not found
     or (app_private.payment_session_in_sync(v_flow.payment_state, v_flow.session_state)
         and app_private.session_video_in_sync(v_flow.session_state, v_flow.video_state)
         and not (app_private.forms_complete_required(v_flow.session_state)
                  and cardinality(app_hidden.open_forms(v_session_id)) > 0)) then
    return null;
  end if;
  for v_violation in select * from app_hidden.session_violations(v_session_id) limit 1 loop
    perform app_private.raise_error(
      'SYNC_VIOLATION', v_violation.message,
      jsonb_build_object('sessionId', v_session_id, 'rule', v_violation.rule) || v_violation.detail);
  end loop;
  return null;
end;
$$;

-- The triggers of the four flow tables, the same on each. Their names give
-- their order:
--   _100_immutable_keys        before update of id (, session_id)  tg__immutable_keys
--   _200_check_initial_status  before insert                       tg__status_change(entity)
--   _210_check_status_change   before update of status             tg__status_change(entity)
--   _300_refuse_delete         before delete                       tg__refuse_delete
--   _310_refuse_truncate       before truncate (statement)         tg__refuse_delete
--   _900_check_flow_sync       after insert or update of status, deferred to commit,
--                              when the change left the session out of sync
do $$
declare
  v_table text;
  v_entity text;
  v_keys text;
begin
  for v_table, v_entity in values
    ('app_public.sessions', 'session'), ('app_public.payments', 'payment'),
    ('app_public.video_calls', 'video'), ('app_public.session_forms', 'form')
  loop
    v_keys := case when v_entity = 'session' then 'id' else 'id, session_id' end;
    execute format(
      'create or replace trigger _100_immutable_keys before update of %2$s on %1$s
         for each row when (%3$s) execute function app_private.tg__immutable_keys()',
      v_table, v_keys,
      case when v_entity = 'session' then 'old.id is distinct from new.id'
           else 'old.id is distinct from new.id or old.session_id is distinct from new.session_id' end);
    execute format(
      'create or replace trigger _200_check_initial_status before insert on %s
         for each row execute function app_private.tg__status_change(%L)', v_table, v_entity);
    execute format(
      'create or replace trigger _210_check_status_change before update of status on %s
         for each row execute function app_private.tg__status_change(%L)', v_table, v_entity);
    execute format(
      'create or replace trigger _300_refuse_delete before delete on %s
         for each row execute function app_private.tg__refuse_delete()', v_table);
    execute format(
      'create or replace trigger _310_refuse_truncate before truncate on %s
         for each statement execute function app_private.tg__refuse_delete()', v_table);
    -- (CREATE OR REPLACE does not cover constraint triggers.)
    execute format('drop trigger if exists _900_check_flow_sync on %s', v_table);
    execute format(
      'create constraint trigger _900_check_flow_sync after insert or update of status on %s
         deferrable initially deferred for each row
         when (current_setting(''flow.sync'', true) = ''!'')
         execute function app_private.tg__check_flow_sync(%L)', v_table, v_entity);
  end loop;
end;
$$;
--! EndIncluded 34_status_change_trigger.sql
--! Included 40_flow_steps.sql
-- The flow steps: each is one call, so one transaction, that leaves every rule
-- satisfied or changes nothing. They move the entities; the triggers decide
-- whether a move is allowed, so no step repeats a rule. Each step locks the
-- session row first (FOR NO KEY UPDATE): two steps on one session queue up
-- behind that lock instead of deadlocking on its payment or call.

-- Marks the changes that follow as made by a flow step (audit_entries.step),
-- and records the caller's reason when one is given.
create or replace function app_private.begin_step(step text, reason text default null)
returns void
language sql
as $$
  select set_config('flow.step', begin_step.step, true);
  select set_config('flow.reason', begin_step.reason, true) where begin_step.reason is not null;
$$;

create or replace function app_private.end_step()
returns void
language sql
as $$
  select set_config('flow.step', '', true);
$$;

-- Locks the session and returns it; NOT_FOUND when there is none.
create or replace function app_private.lock_session(session_id uuid)
returns app_public.sessions
language plpgsql
as $$
declare
  v_session app_public.sessions;
begin
  select * into v_session from app_public.sessions s where s.id = lock_session.session_id for no key update;
  if not found then
    perform app_private.raise_error(
      'NOT_FOUND', format('Session not found: %s', lock_session.session_id),
      jsonb_build_object('entity', 'session', 'id', lock_session.session_id));
  end if;
  return v_session;
end;
$$;

create or replace function app_private.set_session_status(session_id uuid, status text)
returns void
language sql
as $$
  update app_public.sessions s set status = set_session_status.status
  where s.id = set_session_status.session_id;
$$;

create or replace function app_private.set_payment_status(session_id uuid, status text)
returns void
language sql
as $$
  update app_public.payments p set status = set_payment_status.status
  where p.session_id = set_payment_status.session_id;
$$;

create or replace function app_private.set_video_status(session_id uuid, status text)
returns void
language sql
as $$
  update app_public.video_calls v set status = set_video_status.status
  where v.session_id = set_video_status.session_id;
$$;

-- Ends the call of a session that is closing, when it is not over already.
create or replace function app_private.end_call(session_id uuid)
returns void
language sql
as $$
  update app_public.video_calls v set status = 'ended'
  where v.session_id = end_call.session_id and v.status in ('waiting_for_participants', 'active', 'failed');
$$;

create or replace function app_private.step_result(session_id uuid)
returns app_public.sessions
language sql
as $$
  select app_private.end_step();
  select s.* from app_public.sessions s where s.id = step_result.session_id;
$$;

-- Turns a check or not-null violation into INVALID_ARGUMENT. The rule stays
-- in the table's constraint; the constraint's comment is the message.
create or replace function app_private.raise_invalid_argument(schema_name text, table_name text, constraint_name text, column_name text)
returns void
language plpgsql
as $$
declare
  v_explanation text;
begin
  select obj_description(c.oid, 'pg_constraint') into v_explanation
  from pg_constraint c
  join pg_class t on t.oid = c.conrelid
  join pg_namespace n on n.oid = t.relnamespace
  where c.conname = raise_invalid_argument.constraint_name
    and t.relname = raise_invalid_argument.table_name
    and n.nspname = raise_invalid_argument.schema_name;
  perform app_private.raise_error(
    'INVALID_ARGUMENT',
    format('Invalid argument: %s',
           coalesce(v_explanation, nullif(raise_invalid_argument.column_name, '') || ' is required', raise_invalid_argument.constraint_name)),
    jsonb_build_object('constraint', nullif(raise_invalid_argument.constraint_name, ''),
                       'column', nullif(raise_invalid_argument.column_name, '')));
end;
$$;

-- 1. The client requests a session: session requested, payment pending, call
--    not started, and one pending form per required form key.
create or replace function app_public.request_session(
  client_id uuid,
  therapist_id uuid,
  scheduled_at timestamptz,
  duration_minutes integer,
  price_kes integer,
  payer_phone text,
  form_keys text[] default '{}'
)
returns app_public.sessions
language plpgsql
as $$
declare
  v_session app_public.sessions;
  v_schema text;
  v_table text;
  v_constraint text;
  v_column text;
begin
  perform app_private.begin_step('request_session');
  if request_session.scheduled_at <= now() then
    perform app_private.raise_error(
      'INVALID_ARGUMENT',
      format('Invalid argument scheduled_at: %s. Allowed: a time in the future', request_session.scheduled_at),
      jsonb_build_object('argument', 'scheduled_at'));
  end if;
  begin
    insert into app_public.sessions (client_id, therapist_id, scheduled_at, duration_minutes, price_kes)
    values (request_session.client_id, request_session.therapist_id, request_session.scheduled_at,
            request_session.duration_minutes, request_session.price_kes)
    returning * into v_session;
    insert into app_public.payments (session_id, amount_kes, payer_phone)
    values (v_session.id, v_session.price_kes, request_session.payer_phone);
    insert into app_public.video_calls (session_id) values (v_session.id);
    insert into app_public.session_forms (session_id, form_key)
    select distinct v_session.id, k from unnest(coalesce(request_session.form_keys, '{}')) k;
  exception when check_violation or not_null_violation then
    get stacked diagnostics v_schema = schema_name, v_table = table_name,
                            v_constraint = constraint_name, v_column = column_name;
    perform app_private.raise_invalid_argument(v_schema, v_table, v_constraint, v_column);
  end;
  return app_private.step_result(v_session.id);
end;
$$;
comment on function app_public.request_session(uuid, uuid, timestamptz, integer, integer, text, text[]) is
  'Requests a session: the session is requested, its payment pending, its call not started, and its forms pending.';

-- 2. The therapist approves the request.
create or replace function app_public.approve_session(session_id uuid)
returns app_public.sessions
language plpgsql
as $$
begin
  perform app_private.begin_step('approve_session');
  perform app_private.lock_session(approve_session.session_id);
  perform app_private.set_session_status(approve_session.session_id, 'approved');
  return app_private.step_result(approve_session.session_id);
end;
$$;
comment on function app_public.approve_session(uuid) is 'Approves a requested session.';

-- 3. The client pays: payment initiated and session payment_pending together.
--    After a failure the same step is the retry (payment failed → initiated).
create or replace function app_public.initiate_payment(session_id uuid)
returns app_public.sessions
language plpgsql
as $$
declare
  v_session app_public.sessions;
begin
  perform app_private.begin_step('initiate_payment');
  v_session := app_private.lock_session(initiate_payment.session_id);
  perform app_private.set_payment_status(initiate_payment.session_id, 'initiated');
  -- On a retry the session is payment_pending already.
  if v_session.status <> 'payment_pending' then
    perform app_private.set_session_status(initiate_payment.session_id, 'payment_pending');
  end if;
  return app_private.step_result(initiate_payment.session_id);
end;
$$;
comment on function app_public.initiate_payment(uuid) is
  'Starts a payment (or retries a failed one): payment initiated, session payment_pending.';

-- 4. The provider's outcome: confirmed → session paid, then forms_required
--    (forms open) or ready; failed → payment failed, which raises the
--    ALERT_CLIENT_RETRY required action (app_hidden.payment_state_actions).
create or replace function app_public.record_payment_outcome(session_id uuid, outcome text)
returns app_public.sessions
language plpgsql
as $$
begin
  perform app_private.begin_step('record_payment_outcome');
  if record_payment_outcome.outcome is null or record_payment_outcome.outcome not in ('confirmed', 'failed') then
    perform app_private.raise_error(
      'INVALID_ARGUMENT',
      format('Invalid argument outcome: %s. Allowed: [confirmed, failed]', coalesce(record_payment_outcome.outcome, 'null')),
      jsonb_build_object('argument', 'outcome', 'allowed', jsonb_build_array('confirmed', 'failed')));
  end if;
  perform app_private.lock_session(record_payment_outcome.session_id);
  perform app_private.set_payment_status(record_payment_outcome.session_id, record_payment_outcome.outcome);
  if record_payment_outcome.outcome = 'confirmed' then
    perform app_private.set_session_status(record_payment_outcome.session_id, 'paid');
    perform app_private.set_session_status(
      record_payment_outcome.session_id,
      case when cardinality(app_hidden.open_forms(record_payment_outcome.session_id)) > 0
           then 'forms_required' else 'ready' end);
  end if;
  return app_private.step_result(record_payment_outcome.session_id);
end;
$$;
comment on function app_public.record_payment_outcome(uuid, text) is
  'Applies the payment provider''s outcome (confirmed or failed) to the payment and the session.';

-- 5. A required form is completed; the last one makes a forms_required session ready.
create or replace function app_public.complete_form(form_id uuid)
returns app_public.sessions
language plpgsql
as $$
declare
  v_session_id uuid;
  v_session app_public.sessions;
begin
  perform app_private.begin_step('complete_form');
  select f.session_id into v_session_id from app_public.session_forms f where f.id = complete_form.form_id;
  if v_session_id is null then
    perform app_private.raise_error(
      'NOT_FOUND', format('Form not found: %s', complete_form.form_id),
      jsonb_build_object('entity', 'form', 'id', complete_form.form_id));
  end if;
  v_session := app_private.lock_session(v_session_id);
  update app_public.session_forms f set status = 'completed' where f.id = complete_form.form_id;
  if v_session.status = 'forms_required' and cardinality(app_hidden.open_forms(v_session_id)) = 0 then
    perform app_private.set_session_status(v_session_id, 'ready');
  end if;
  return app_private.step_result(v_session_id);
end;
$$;
comment on function app_public.complete_form(uuid) is
  'Completes a required intake form; completing the last one makes the session ready.';

-- 6. A participant joins the call. Refused, with the code of
--    app_hidden.session_call_access, when the session's state does not allow
--    it (UNPAID_ACCESS, FORMS_INCOMPLETE, SESSION_CLOSED). The call waits for
--    participants (from not_started, or again after a failure).
create or replace function app_public.join_call(session_id uuid)
returns app_public.sessions
language plpgsql
as $$
declare
  v_session app_public.sessions;
  v_access app_hidden.session_call_access;
begin
  perform app_private.begin_step('join_call');
  v_session := app_private.lock_session(join_call.session_id);
  select * into v_access from app_hidden.session_call_access a where a.session_state = v_session.status;
  if not coalesce(v_access.can_join_call, false) then
    perform app_private.raise_error(
      coalesce(v_access.refusal_code, 'SESSION_CLOSED'),
      format('FORBIDDEN: %s (session=%s)', coalesce(v_access.refusal_message, 'Cannot join video call'), v_session.status),
      jsonb_build_object('entity', 'session', 'id', v_session.id, 'session', v_session.status));
  end if;
  update app_public.video_calls v set status = 'waiting_for_participants'
  where v.session_id = join_call.session_id
    and exists (
      select 1 from app_hidden.transitions t
      where t.entity_type = 'video' and t.from_state = v.status and t.to_state = 'waiting_for_participants');
  return app_private.step_result(join_call.session_id);
end;
$$;
comment on function app_public.join_call(uuid) is
  'Joins the session''s video call; refused before payment, with forms open, or when the session is over.';

-- 7. The therapist starts the session: session in_progress, call active.
create or replace function app_public.start_session(session_id uuid)
returns app_public.sessions
language plpgsql
as $$
begin
  perform app_private.begin_step('start_session');
  perform app_private.lock_session(start_session.session_id);
  perform app_private.set_session_status(start_session.session_id, 'in_progress');
  -- A call nobody has joined yet (or a failed one) goes through waiting_for_participants.
  update app_public.video_calls v set status = 'waiting_for_participants'
  where v.session_id = start_session.session_id and v.status in ('not_started', 'failed');
  perform app_private.set_video_status(start_session.session_id, 'active');
  return app_private.step_result(start_session.session_id);
end;
$$;
comment on function app_public.start_session(uuid) is 'Starts a ready session: session in_progress, call active.';

-- 8. The therapist completes the session: session completed, call ended.
create or replace function app_public.complete_session(session_id uuid)
returns app_public.sessions
language plpgsql
as $$
begin
  perform app_private.begin_step('complete_session');
  perform app_private.lock_session(complete_session.session_id);
  perform app_private.set_session_status(complete_session.session_id, 'completed');
  perform app_private.end_call(complete_session.session_id);
  return app_private.step_result(complete_session.session_id);
end;
$$;
comment on function app_public.complete_session(uuid) is 'Completes a session in progress: session completed, call ended.';

-- 9. Cancel: the session is cancelled; money taken is refunded, a payment not
--    yet taken is cancelled; a call under way ends.
create or replace function app_public.cancel_session(session_id uuid, reason text default null)
returns app_public.sessions
language plpgsql
as $$
begin
  perform app_private.begin_step('cancel_session', cancel_session.reason);
  perform app_private.lock_session(cancel_session.session_id);
  perform app_private.set_session_status(cancel_session.session_id, 'cancelled');
  update app_public.payments p
  set status = case when p.status = 'confirmed' then 'refunded' else 'cancelled' end
  where p.session_id = cancel_session.session_id and p.status in ('pending', 'initiated', 'failed', 'confirmed');
  perform app_private.end_call(cancel_session.session_id);
  return app_private.step_result(cancel_session.session_id);
end;
$$;
comment on function app_public.cancel_session(uuid, text) is
  'Cancels a session: a confirmed payment is refunded, any other open payment cancelled, a call under way ended.';

-- 10. No-show (D1): the client's keeps the payment; the therapist's refunds it.
create or replace function app_public.mark_no_show(session_id uuid, party text)
returns app_public.sessions
language plpgsql
as $$
begin
  perform app_private.begin_step('mark_no_show');
  if mark_no_show.party is null or mark_no_show.party not in ('client', 'therapist') then
    perform app_private.raise_error(
      'INVALID_ARGUMENT',
      format('Invalid argument party: %s. Allowed: [client, therapist]', coalesce(mark_no_show.party, 'null')),
      jsonb_build_object('argument', 'party', 'allowed', jsonb_build_array('client', 'therapist')));
  end if;
  perform app_private.lock_session(mark_no_show.session_id);
  perform app_private.set_session_status(mark_no_show.session_id, 'no_show_' || mark_no_show.party);
  if mark_no_show.party = 'therapist' then
    perform app_private.set_payment_status(mark_no_show.session_id, 'refunded');
  end if;
  perform app_private.end_call(mark_no_show.session_id);
  return app_private.step_result(mark_no_show.session_id);
end;
$$;
comment on function app_public.mark_no_show(uuid, text) is
  'Marks a ready session as a no-show of the client (payment kept) or of the therapist (payment refunded).';

-- 11. Refund a confirmed payment. A session whose state does not allow a
--     refunded payment (app_hidden.payment_session_sync) is cancelled with it.
create or replace function app_public.refund_payment(session_id uuid, reason text default null)
returns app_public.sessions
language plpgsql
as $$
declare
  v_session app_public.sessions;
begin
  perform app_private.begin_step('refund_payment', refund_payment.reason);
  v_session := app_private.lock_session(refund_payment.session_id);
  perform app_private.set_payment_status(refund_payment.session_id, 'refunded');
  if not exists (
    select 1 from app_hidden.payment_session_sync r
    where r.payment_state = 'refunded' and r.session_state = v_session.status
  ) then
    perform app_private.set_session_status(refund_payment.session_id, 'cancelled');
    perform app_private.end_call(refund_payment.session_id);
  end if;
  return app_private.step_result(refund_payment.session_id);
end;
$$;
comment on function app_public.refund_payment(uuid, text) is
  'Refunds a confirmed payment; a session still open is cancelled with it.';

-- 12. The video provider reports that the call failed (D2); joining again retries it.
create or replace function app_public.report_call_failure(session_id uuid)
returns app_public.sessions
language plpgsql
as $$
begin
  perform app_private.begin_step('report_call_failure');
  perform app_private.lock_session(report_call_failure.session_id);
  perform app_private.set_video_status(report_call_failure.session_id, 'failed');
  return app_private.step_result(report_call_failure.session_id);
end;
$$;
comment on function app_public.report_call_failure(uuid) is
  'Records that the session''s video call failed; joining again retries it.';
--! EndIncluded 40_flow_steps.sql
--! Included 50_dba_tools.sql
-- For DBAs in psql: what can this entity do next, and why not?
--   select * from app_hidden.explain_entity('session', '…');
-- One row per state of the entity's machine: whether the change is allowed on
-- its own (the transition table), the error it would raise if not, and, when
-- allowed, what the other entities of the session must do in the same
-- transaction for the commit-time rules to hold (the states they can reach
-- in one step that the rules allow with it).
create or replace function app_hidden.explain_entity(entity_type text, entity_id uuid)
returns table (
  entity text,
  id uuid,
  session_id uuid,
  current_state text,
  next_state text,
  allowed boolean,
  code text,
  reason text,
  message text,
  also_requires text
)
language plpgsql
stable
as $$
declare
  v_table regclass;
  v_state text;
  v_session_id uuid;
  v_session text;
  v_payment text;
  v_video text;
  v_open_forms text[];
begin
  select e.entity_table into v_table from app_hidden.entity_types e where e.name = explain_entity.entity_type;
  if v_table is null then
    perform app_private.raise_error(
      'INVALID_ARGUMENT',
      format('Invalid argument entity_type: %s. Allowed: [%s]', explain_entity.entity_type,
             (select string_agg(e.name, ', ' order by e.position) from app_hidden.entity_types e)),
      jsonb_build_object('argument', 'entity_type'));
  end if;
  execute format('select status, %s from %s where id = $1',
                 case when explain_entity.entity_type = 'session' then 'id' else 'session_id' end, v_table)
    into v_state, v_session_id using explain_entity.entity_id;
  if v_state is null then
    perform app_private.raise_error(
      'NOT_FOUND', format('%s not found: %s', initcap(explain_entity.entity_type), explain_entity.entity_id),
      jsonb_build_object('entity', explain_entity.entity_type, 'id', explain_entity.entity_id));
  end if;
  select s.status into v_session from app_public.sessions s where s.id = v_session_id;
  select p.status into v_payment from app_public.payments p where p.session_id = v_session_id;
  select v.status into v_video from app_public.video_calls v where v.session_id = v_session_id;
  v_open_forms := app_hidden.open_forms(v_session_id);

  return query
  select explain_entity.entity_type, explain_entity.entity_id, v_session_id, v_state, st.name,
         c.allowed and not forms_block, 
         case when forms_block then 'FORBIDDEN_TRANSITION' else c.code end,
         case when forms_block then 'FORMS_REQUIRED' else c.reason end,
         case when forms_block then
           format('FORBIDDEN TRANSITION: session.%s → session.%s. Reason: FORMS_REQUIRED. Incomplete forms: [%s]',
                  v_state, st.name, array_to_string(v_open_forms, ', '))
         else c.message end,
         case when c.allowed and not forms_block then nullif(concat_ws('; ', needs_payment, needs_session, needs_video), '') end
  from app_hidden.states st
  cross join lateral app_hidden.check_transition(explain_entity.entity_type, v_state, st.name) c
  cross join lateral (
    select
      c.allowed and explain_entity.entity_type = 'session' and cardinality(v_open_forms) > 0 and exists (
        select 1 from app_hidden.session_form_requirements r
        where r.session_state = st.name and r.forms_complete_required) as forms_block,
      case when explain_entity.entity_type = 'session' and not exists (
             select 1 from app_hidden.payment_session_sync r where r.payment_state = v_payment and r.session_state = st.name)
           then format('payment %s → one of [%s]', v_payment,
                       (select string_agg(r.payment_state, ', ') from app_hidden.payment_session_sync r
                        join app_hidden.transitions t on t.entity_type = 'payment' and t.from_state = v_payment and t.to_state = r.payment_state
                        where r.session_state = st.name))
      end as needs_payment,
      case when explain_entity.entity_type in ('payment', 'video') and not exists (
             select 1 from app_hidden.payment_session_sync r
             where explain_entity.entity_type = 'payment' and r.payment_state = st.name and r.session_state = v_session
             union all
             select 1 from app_hidden.session_video_sync r
             where explain_entity.entity_type = 'video' and r.video_state = st.name and r.session_state = v_session)
           then format('session %s → one of [%s]', v_session,
                       case when explain_entity.entity_type = 'payment'
                            then (select string_agg(r.session_state, ', ') from app_hidden.payment_session_sync r
                                  join app_hidden.transitions t on t.entity_type = 'session' and t.from_state = v_session and t.to_state = r.session_state
                                  where r.payment_state = st.name)
                            else (select string_agg(r.session_state, ', ') from app_hidden.session_video_sync r
                                  join app_hidden.transitions t on t.entity_type = 'session' and t.from_state = v_session and t.to_state = r.session_state
                                  where r.video_state = st.name) end)
      end as needs_session,
      case when explain_entity.entity_type = 'session' and not exists (
             select 1 from app_hidden.session_video_sync r where r.session_state = st.name and r.video_state = v_video)
           then format('video %s → one of [%s]', v_video,
                       (select string_agg(r.video_state, ', ') from app_hidden.session_video_sync r
                        join app_hidden.transitions t on t.entity_type = 'video' and t.from_state = v_video and t.to_state = r.video_state
                        where r.session_state = st.name))
      end as needs_video
  ) x
  where st.entity_type = explain_entity.entity_type and st.name <> v_state
  order by st.position;
end;
$$;
comment on function app_hidden.explain_entity(text, uuid) is
  'For each state an entity could move to: allowed or not, the error and reason if not, and what its session''s other entities must do with it.';
--! EndIncluded 50_dba_tools.sql
