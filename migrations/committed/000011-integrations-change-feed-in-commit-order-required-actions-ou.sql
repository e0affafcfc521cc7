--! Previous: sha1:3d13a02fb88f70963f07cafb6cfcfeab5a0e76f0
--! Hash: sha1:ae8fc304cc6289bbc344a828f9f1e6db632bb968
--! Message: Integrations: change feed in commit order, required actions outbox, webhooks, integration role

--! Included 20_integrations.sql
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
--! EndIncluded 20_integrations.sql
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
--   4. appends the audit entry, and notifies the change feed's readers.
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

  -- 3 and 4, in one statement: append the audit entry, and read the
  -- session's states, with this row's new one, locking the session row (a
  -- no-op when this row is the session: its UPDATE holds the lock already;
  -- a new session is not there yet, and is out of sync until its payment and
  -- call are).
  if v_entity = 'session' then
    v_session_id := new.id;
  else
    v_session_id := new.session_id;
  end if;
  with audit as (
    insert into app_public.audit_entries
      (entity_type, entity_id, session_id, old_value, new_value, step, reason, actor, request_id)
    values (v_entity, new.id, v_session_id, old.status, new.status,
            nullif(current_setting('flow.step', true), ''), nullif(current_setting('flow.reason', true), ''),
            coalesce(nullif(current_setting('flow.actor', true), ''), session_user),
            nullif(current_setting('flow.request_id', true), ''))
  )
  select case when v_entity = 'session' then new.status else s.status end,
         case when v_entity = 'payment' then new.status else p.status end,
         case when v_entity = 'video' then new.status else c.status end
    into v_session_state, v_payment_state, v_video_state
  from app_public.sessions s
  left join app_public.payments p on p.session_id = s.id
  left join app_public.video_calls c on c.session_id = s.id
  where s.id = v_session_id
  for no key update of s;
  -- 2. Required actions (only payment states have any), after the change's
  -- own audit entry, which they follow in the change feed.
  if v_entity = 'payment' then
    v_actions := app_private.payment_actions(new.status);
    if v_actions is not null then
      insert into app_public.required_actions (session_id, action, entity_type, entity_id)
      select new.session_id, a, v_entity, new.id from unnest(v_actions) a;
    end if;
  end if;

  -- Wakes the change feed's live readers (subscriptions, webhooks): the
  -- session's id only; they read the change back under their own rights.
  -- (Delivered at commit, once per session and transaction.)
  perform pg_notify('flow_changes', v_session_id::text);
  -- A form row cannot judge the form it adds: it always queues the check,
  -- and the check then runs whatever comes later in the transaction.
  if v_entity = 'form' then
    perform set_config('flow.forms_changed', 'on', true);
  end if;
  v_in_sync := v_entity <> 'form'
    and app_private.payment_session_in_sync(v_payment_state, v_session_state)
    and app_private.session_video_in_sync(v_session_state, v_video_state);
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
--! Included 41_authorization.sql
-- Who is calling. The API runs each request as one of the API roles
-- (SET ROLE, from the JWT), with the user's id in jwt.claims.user_id. Inside
-- a SECURITY DEFINER flow step current_user is the schema owner, but the
-- `role` setting still names the role the request runs as.

-- The caller's API role ('client', 'therapist', 'admin', 'payment_provider',
-- 'integration', 'anonymous'), or null for anyone else: a DBA as the schema owner or a
-- superuser.
create or replace function app_private.current_api_role() returns text
language sql stable
as $$
  select case current_setting('role', true)
    when 'flow_client' then 'client'
    when 'flow_therapist' then 'therapist'
    when 'flow_admin' then 'admin'
    when 'flow_payment_provider' then 'payment_provider'
    when 'flow_integration' then 'integration'
    when 'flow_anonymous' then 'anonymous'
  end;
$$;
comment on function app_private.current_api_role() is
  'The API role the current request runs as, or null for a DBA.';

create or replace function app_public.current_user_id() returns uuid
language sql stable
as $$
  select nullif(current_setting('jwt.claims.user_id', true), '')::uuid;
$$;
comment on function app_public.current_user_id() is 'The id of the user making the request (from the JWT), or null.';

-- Whether a session is the caller's own: a client's as its client, a
-- therapist's as its therapist. Every "own" in the permissions means this.
create or replace function app_private.owns_session(client_id uuid, therapist_id uuid) returns boolean
language sql stable
as $$
  select coalesce(case app_private.current_api_role()
    when 'client' then owns_session.client_id = app_public.current_user_id()
    when 'therapist' then owns_session.therapist_id = app_public.current_user_id()
  end, false);
$$;

-- Whether the caller may see a session's flow: admins and integrations
-- every session, a client or a therapist their own. (The row-level security policies use it;
-- a DBA is not subject to them.)
create or replace function app_private.can_see_session(client_id uuid, therapist_id uuid) returns boolean
language sql stable
as $$
  select app_private.current_api_role() in ('admin', 'integration') or app_private.owns_session(can_see_session.client_id, can_see_session.therapist_id);
$$;

-- Refuses a step the caller may not take (app_hidden.step_permissions):
-- NOT_AUTHORIZED when the caller's role may not take it at all (or, for a
-- new session, not for that client). Given a session, a role that may take
-- the step only on its own sessions gets NOT_FOUND for another's, as if it
-- did not exist: whether it does is not theirs to know.
create or replace function app_private.authorize(step text, session app_public.sessions) returns void
language plpgsql stable
as $$
declare
  v_role text := app_private.current_api_role();
  v_scope text;
begin
  if v_role is null then
    return; -- a DBA
  end if;
  select p.scope into v_scope from app_hidden.step_permissions p where p.step = authorize.step and p.role = v_role;
  if v_scope is null then
    perform app_private.raise_error(
      'NOT_AUTHORIZED',
      format('Not authorized: %s may not %s', case v_role when 'anonymous' then 'an anonymous user (no token)'
                                                         else 'a ' || replace(v_role, '_', ' ') end,
             replace(authorize.step, ':', ' ')),
      jsonb_build_object('step', authorize.step, 'role', v_role,
                         'allowedRoles', (select jsonb_agg(p.role order by p.role) from app_hidden.step_permissions p
                                          where p.step = authorize.step)));
  end if;
  if v_scope = 'any' or authorize.session is null then
    return;
  end if;
  if app_private.owns_session(authorize.session.client_id, authorize.session.therapist_id) then
    return;
  end if;
  if authorize.session.id is null then
    perform app_private.raise_error(
      'NOT_AUTHORIZED', format('Not authorized: a %s may %s only for themselves', v_role, authorize.step),
      jsonb_build_object('step', authorize.step, 'role', v_role));
  end if;
  perform app_private.raise_error(
    'NOT_FOUND', format('Session not found: %s', authorize.session.id),
    jsonb_build_object('entity', 'session', 'id', authorize.session.id));
end;
$$;
comment on function app_private.authorize(text, app_public.sessions) is
  'Raises NOT_AUTHORIZED (or NOT_FOUND for a session not theirs) unless the caller may take the step.';

grant execute on function app_private.owns_session(uuid, uuid) to flow_client, flow_therapist, flow_admin, flow_payment_provider, flow_integration;
--! EndIncluded 41_authorization.sql
--! Included 44_change_feed.sql
-- The change feed: the audit log in commit order, after a cursor, never
-- skipping a committed change. A bigserial id would skip one: a transaction
-- that took id 41 and commits after the one that took 42 is missed by a
-- reader that saw 42 and went on from there. So a cursor is made of
-- snapshots, not ids. A read takes the current snapshot S; it returns the
-- entries of the transactions that S sees committed and the reader's last
-- snapshot did not ("the window"); the next read starts from S. Each
-- transaction falls in exactly one window, and windows follow commit order.
-- Within a window entries come in id order: two changes of one session are
-- in commit order there too (the session's row lock makes the later change
-- wait for the earlier one's commit, so it takes a later id). A page that
-- does not exhaust its window continues it by id.
--
-- Cursor: v1:<from snapshot>/<window's snapshot, or empty when closed>/<last id>
-- Read as the caller (row-level security: everyone reads the changes of the
-- sessions they see).

-- (SECURITY DEFINER: its refusal reads app_hidden.error_codes, which the
-- feed's callers may not.)
create or replace function app_private.parse_feed_cursor(cursor text, out from_snapshot pg_snapshot, out upper_snapshot pg_snapshot, out last_id bigint)
language plpgsql
immutable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_parts text[];
begin
  if parse_feed_cursor.cursor is null then
    -- Before the first transaction: everything is after it.
    from_snapshot := '1:1:'::pg_snapshot;
    last_id := 0;
    return;
  end if;
  v_parts := regexp_match(parse_feed_cursor.cursor, '^v1:([0-9]+:[0-9]+:[0-9,]*)/([0-9]+:[0-9]+:[0-9,]*)?/([0-9]{1,18})$');
  if v_parts is null then
    perform app_private.raise_error('INVALID_CURSOR', format('Invalid cursor: %s', left(parse_feed_cursor.cursor, 200)),
                                    jsonb_build_object('argument', 'after'));
  end if;
  begin
    from_snapshot := v_parts[1]::pg_snapshot;
    upper_snapshot := v_parts[2]::pg_snapshot;
    last_id := v_parts[3]::bigint;
  exception when others then
    perform app_private.raise_error('INVALID_CURSOR', format('Invalid cursor: %s', left(parse_feed_cursor.cursor, 200)),
                                    jsonb_build_object('argument', 'after'));
  end;
end;
$$;

create or replace function app_private.to_change_event(e app_public.audit_entries, cursor text)
returns app_public.change_event
language sql
immutable
as $$
  select (e.id, to_change_event.cursor, e.entity_type || '.' || e.new_value, e.session_id, e.entity_type, e.entity_id,
          e.old_value, e.new_value, e.step, e.reason, e.actor, e.request_id, e.created_at)::app_public.change_event;
$$;

drop type if exists app_public.change_feed_page cascade;
create type app_public.change_feed_page as (
  events app_public.change_event[],
  cursor text,
  has_more boolean
);
comment on type app_public.change_feed_page is
  'A page of the change feed: the events, the cursor to read on from (always given, even with no event), and whether more are waiting already.';

-- A page of changes committed after `after` (null: from the beginning), at
-- most max_events (1 to 1000), optionally of one session.
create or replace function app_public.change_feed(after text default null, max_events integer default 100, session_id uuid default null)
returns app_public.change_feed_page
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
  v_from pg_snapshot;
  v_upper pg_snapshot;
  v_last bigint;
  v_limit integer := least(greatest(coalesce(change_feed.max_events, 100), 1), 1000);
  v_entries app_public.audit_entries[];
  v_more boolean;
  v_closed text;
begin
  select c.from_snapshot, c.upper_snapshot, c.last_id into v_from, v_upper, v_last
  from app_private.parse_feed_cursor(change_feed.after) c;
  -- (A stable function reads with its caller's snapshot: this one.)
  v_upper := coalesce(v_upper, pg_current_snapshot());
  v_entries := array(
    select e from app_public.audit_entries e
    where e.txid >= pg_snapshot_xmin(v_from)::text::bigint
      and not pg_visible_in_snapshot(e.txid::text::xid8, v_from)
      and pg_visible_in_snapshot(e.txid::text::xid8, v_upper)
      and e.id > v_last
      and (change_feed.session_id is null or e.session_id = change_feed.session_id)
    order by e.id
    limit v_limit + 1);
  v_more := cardinality(v_entries) > v_limit;
  v_closed := 'v1:' || v_upper::text || '//0';
  return (
    (select coalesce(array_agg(
              app_private.to_change_event(v_entries[i],
                case when not v_more and i = cardinality(v_entries) then v_closed
                     else 'v1:' || v_from::text || '/' || v_upper::text || '/' || (v_entries[i]).id end)
              order by i), '{}')
     from generate_series(1, least(cardinality(v_entries), v_limit)) i),
    case when v_more then 'v1:' || v_from::text || '/' || v_upper::text || '/' || (v_entries[v_limit]).id else v_closed end,
    v_more)::app_public.change_feed_page;
end;
$$;
comment on function app_public.change_feed(text, integer, uuid) is
  E'The changes committed after a cursor (none: from the beginning), in commit order, never skipping one: status changes of payments, sessions, video calls, forms and required actions, as the database committed them. Give `cursor` back as `after` to read on. Only the changes of sessions the viewer may see.';

-- A cursor for "now": the changes committed from now on come after it.
create or replace function app_public.change_feed_now()
returns text
language sql
stable
as $$
  select 'v1:' || pg_current_snapshot()::text || '//0';
$$;
comment on function app_public.change_feed_now() is
  'A cursor that starts the change feed now: only changes committed from now on come after it.';
--! EndIncluded 44_change_feed.sql
--! Included 45_required_actions_outbox.sql
-- The required actions as an outbox (tables: 20_integrations.sql): listed,
-- claimed by one consumer at a time for a lease, completed with a result; a
-- claim not completed in time returns to the queue. Every status change is
-- checked against app_hidden.required_action_transitions and audited (so it
-- is in the change feed, as required_action.<status>).

create or replace function app_private.tg_required_actions__status() returns trigger
language plpgsql
as $$
begin
  if tg_op = 'INSERT' then
    if new.status <> 'open' then
      perform app_private.raise_error('INVALID_INITIAL_STATE',
        format('Invalid required_action initial state: %s. Allowed: [open]', new.status),
        jsonb_build_object('entity', 'required_action', 'to', new.status, 'allowed', jsonb_build_array('open')));
    end if;
  elsif not exists (
    select 1 from app_hidden.required_action_transitions t where t.from_status = old.status and t.to_status = new.status
  ) then
    perform app_private.raise_error('INVALID_STATE_TRANSITION',
      format('Invalid required_action transition: %s → %s. Allowed: [%s]', old.status, new.status,
             (select string_agg(t.to_status, ', ' order by t.to_status) from app_hidden.required_action_transitions t where t.from_status = old.status)),
      jsonb_build_object('entity', 'required_action', 'id', new.id, 'from', old.status, 'to', new.status,
                         'allowed', (select coalesce(jsonb_agg(t.to_status order by t.to_status), '[]') from app_hidden.required_action_transitions t where t.from_status = old.status)));
  end if;
  insert into app_public.audit_entries
    (entity_type, entity_id, session_id, old_value, new_value, step, reason, actor, request_id)
  values ('required_action', new.uid, new.session_id, case when tg_op = 'UPDATE' then old.status end, new.status,
          nullif(current_setting('flow.step', true), ''), nullif(current_setting('flow.reason', true), ''),
          coalesce(nullif(current_setting('flow.actor', true), ''), session_user),
          nullif(current_setting('flow.request_id', true), ''));
  perform pg_notify('flow_changes', new.session_id::text);
  return new;
end;
$$;
comment on function app_private.tg_required_actions__status() is
  'Checks a required action''s status change against its small state machine, and audits it.';
create or replace trigger _100_status_insert
  before insert on app_public.required_actions
  for each row execute function app_private.tg_required_actions__status();
create or replace trigger _100_status_update
  before update of status on app_public.required_actions
  for each row when (old.status is distinct from new.status)
  execute function app_private.tg_required_actions__status();

-- The consumer: the one named, or else the caller (user id, or role).
create or replace function app_private.action_consumer(consumer text)
returns text
language sql
stable
as $$
  select coalesce(nullif(trim(action_consumer.consumer), ''), app_public.current_user_id()::text, app_private.current_api_role(), session_user);
$$;

-- Returns expired claims to the queue (audited, with the reason); how many.
create or replace function app_private.release_expired_claims()
returns integer
language plpgsql
as $$
declare
  v_count integer;
begin
  perform set_config('flow.reason', 'The claim expired without completion.', true);
  with expired as (
    select a.id from app_public.required_actions a
    where a.status = 'claimed' and a.claim_expires_at < now()
    order by a.id
    for update skip locked
  )
  update app_public.required_actions a
  set status = 'open', claimed_by = null, claim_expires_at = null
  from expired e where a.id = e.id;
  get diagnostics v_count = row_count;
  perform set_config('flow.reason', '', true);
  return v_count;
end;
$$;

-- Claims up to max_actions open actions (oldest first; of the given kinds,
-- if any), for lease_seconds. Two consumers never get the same action.
create or replace function app_public.claim_required_actions(
  consumer text default null,
  max_actions integer default 10,
  lease_seconds integer default 60,
  actions text[] default null
)
returns setof app_public.required_actions
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_consumer text;
begin
  perform app_private.begin_step('claim_required_actions');
  perform app_private.authorize('claim_required_actions', null);
  v_consumer := app_private.action_consumer(claim_required_actions.consumer);
  if coalesce(claim_required_actions.max_actions, 0) not between 1 and 1000 then
    perform app_private.raise_error('INVALID_ARGUMENT',
      format('Invalid argument max_actions: %s. Allowed: 1 to 1000', claim_required_actions.max_actions),
      jsonb_build_object('argument', 'max_actions'));
  end if;
  if coalesce(claim_required_actions.lease_seconds, 0) not between 1 and 86400 then
    perform app_private.raise_error('INVALID_ARGUMENT',
      format('Invalid argument lease_seconds: %s. Allowed: 1 to 86400', claim_required_actions.lease_seconds),
      jsonb_build_object('argument', 'lease_seconds'));
  end if;
  perform app_private.release_expired_claims();
  perform set_config('flow.reason', format('Claimed by %s for %s s.', v_consumer, claim_required_actions.lease_seconds), true);
  return query
  with next as (
    select a.id from app_public.required_actions a
    where a.status = 'open' and (claim_required_actions.actions is null or a.action = any (claim_required_actions.actions))
    order by a.id
    limit claim_required_actions.max_actions
    for update skip locked
  )
  update app_public.required_actions a
  set status = 'claimed', claimed_by = v_consumer,
      claim_expires_at = now() + make_interval(secs => claim_required_actions.lease_seconds), claims = a.claims + 1
  from next where a.id = next.id
  returning a.*;
  perform app_private.end_step();
end;
$$;
comment on function app_public.claim_required_actions(text, integer, integer, text[]) is
  E'@resultFieldName requiredActions\nClaims up to max_actions open required actions, oldest first (only those of the given kinds, when given), for lease_seconds: no other consumer gets them meanwhile; one not completed in time returns to the queue. consumer defaults to the caller.';

-- The action, locked, held by the consumer; ACTION_NOT_CLAIMED otherwise.
create or replace function app_private.lock_claimed_action(action_id bigint, consumer text)
returns app_public.required_actions
language plpgsql
as $$
declare
  v_action app_public.required_actions;
begin
  select * into v_action from app_public.required_actions a where a.id = lock_claimed_action.action_id for update;
  if not found then
    perform app_private.raise_error('NOT_FOUND', format('Required action not found: %s', lock_claimed_action.action_id),
                                    jsonb_build_object('entity', 'required_action', 'id', lock_claimed_action.action_id));
  end if;
  if v_action.status <> 'claimed' or v_action.claimed_by <> lock_claimed_action.consumer then
    perform app_private.raise_error('ACTION_NOT_CLAIMED',
      format('Required action %s is not claimed by %s: %s', v_action.id, lock_claimed_action.consumer,
             case v_action.status when 'claimed' then 'claimed by ' || v_action.claimed_by else v_action.status end),
      jsonb_build_object('entity', 'required_action', 'id', v_action.id, 'status', v_action.status));
  end if;
  return v_action;
end;
$$;

create or replace function app_public.complete_required_action(action_id bigint, result jsonb default null, consumer text default null)
returns app_public.required_actions
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_action app_public.required_actions;
begin
  perform app_private.begin_step('complete_required_action');
  perform app_private.authorize('complete_required_action', null);
  v_action := app_private.lock_claimed_action(complete_required_action.action_id, app_private.action_consumer(complete_required_action.consumer));
  update app_public.required_actions a
  set status = 'completed', completed_at = now(), result = complete_required_action.result, claimed_by = null, claim_expires_at = null
  where a.id = v_action.id
  returning * into v_action;
  perform app_private.end_step();
  return v_action;
end;
$$;
comment on function app_public.complete_required_action(bigint, jsonb, text) is
  E'@resultFieldName requiredAction\nCompletes a required action the consumer holds a claim on, with its result. ACTION_NOT_CLAIMED when the consumer does not hold it (its claim expired and another took it, say).';

create or replace function app_public.release_required_action(action_id bigint, consumer text default null)
returns app_public.required_actions
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_action app_public.required_actions;
begin
  perform app_private.begin_step('release_required_action');
  perform app_private.authorize('release_required_action', null);
  v_action := app_private.lock_claimed_action(release_required_action.action_id, app_private.action_consumer(release_required_action.consumer));
  update app_public.required_actions a set status = 'open', claimed_by = null, claim_expires_at = null
  where a.id = v_action.id
  returning * into v_action;
  perform app_private.end_step();
  return v_action;
end;
$$;
comment on function app_public.release_required_action(bigint, text) is
  E'@resultFieldName requiredAction\nGives a claimed required action back to the queue, for another consumer.';
--! EndIncluded 45_required_actions_outbox.sql
--! Included 46_webhooks.sql
-- Webhooks (tables: 20_integrations.sql). A webhook reads the change feed
-- from where it was registered, on its own cursor: each matching event
-- becomes a delivery, queued for graphile-worker (server/worker/webhooks.ts)
-- in the same transaction that moves the cursor on, so no event is missed
-- or queued twice. Deliveries are signed with the webhook's secret (README,
-- "Webhooks").

-- Whether an event type (payment.confirmed) matches one of the patterns
-- (payment.confirmed, payment.*, *).
create or replace function app_private.event_matches(event_type text, patterns text[])
returns boolean
language sql
immutable
as $$
  select '*' = any (event_matches.patterns)
      or event_matches.event_type = any (event_matches.patterns)
      or split_part(event_matches.event_type, '.', 1) || '.*' = any (event_matches.patterns);
$$;

create or replace function app_public.register_webhook(url text, event_types text[])
returns app_public.webhook_registration
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_hook app_private.webhooks;
  v_schema text;
  v_table text;
  v_constraint text;
  v_column text;
begin
  perform app_private.authorize('register_webhook', null);
  begin
    insert into app_private.webhooks (url, event_types, secret, registered_by, cursor)
    values (register_webhook.url, register_webhook.event_types,
            -- 244 random bits (gen_random_uuid draws from the strong random source).
            'whsec_' || replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''),
            coalesce(nullif(current_setting('flow.actor', true), ''), session_user),
            app_public.change_feed_now())
    returning * into v_hook;
  exception when check_violation or not_null_violation then
    get stacked diagnostics v_schema = schema_name, v_table = table_name, v_constraint = constraint_name, v_column = column_name;
    perform app_private.raise_invalid_argument(v_schema, v_table, v_constraint, v_column);
  end;
  return (v_hook.id, v_hook.url, v_hook.event_types, v_hook.secret)::app_public.webhook_registration;
end;
$$;
comment on function app_public.register_webhook(text, text[]) is
  E'@resultFieldName webhook\nRegisters a URL for the change events of the given types (payment.confirmed, payment.*, required_action.open, *), from now on. Returns its signing secret, once.';

create or replace function app_public.unregister_webhook(webhook_id uuid)
returns boolean
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform app_private.authorize('register_webhook', null);
  update app_private.webhooks w set active = false where w.id = unregister_webhook.webhook_id and w.active;
  return found;
end;
$$;
comment on function app_public.unregister_webhook(uuid) is 'Stops a webhook''s deliveries (those under way finish).';

-- Moves every active webhook's cursor on by up to max_events, queueing a
-- delivery job for each matching event; returns how many events it read.
-- Run as the schema owner (it reads every session's changes). Concurrent
-- dispatchers skip a webhook another is moving.
create or replace function app_private.dispatch_webhooks(max_events integer default 500)
returns integer
language plpgsql
as $$
declare
  v_hook app_private.webhooks;
  v_page app_public.change_feed_page;
  v_read integer := 0;
  v_delivery bigint;
  v_event app_public.change_event;
begin
  for v_hook in
    select * from app_private.webhooks w where w.active order by w.created_at for update skip locked
  loop
    v_page := app_public.change_feed(v_hook.cursor, dispatch_webhooks.max_events);
    foreach v_event in array v_page.events loop
      v_read := v_read + 1;
      continue when not app_private.event_matches(v_event.event_type, v_hook.event_types);
      insert into app_private.webhook_deliveries (webhook_id, event_id, event)
      values (v_hook.id, v_event.id, jsonb_build_object(
        'id', v_event.id, 'type', v_event.event_type, 'cursor', v_event.cursor, 'createdAt', v_event.created_at,
        'data', jsonb_build_object(
          'sessionId', v_event.session_id, 'entityType', v_event.entity_type, 'entityId', v_event.entity_id,
          'oldValue', v_event.old_value, 'newValue', v_event.new_value, 'step', v_event.step,
          'reason', v_event.reason, 'actor', v_event.actor, 'requestId', v_event.request_id)))
      on conflict (webhook_id, event_id) do nothing
      returning id into v_delivery;
      if v_delivery is not null then
        perform graphile_worker.add_job('webhook_deliver', json_build_object('deliveryId', v_delivery),
                                        job_key := 'webhook_deliver:' || v_delivery);
      end if;
    end loop;
    update app_private.webhooks w set cursor = v_page.cursor where w.id = v_hook.id;
  end loop;
  return v_read;
end;
$$;

-- Records one attempt to deliver; the delivery is delivered, or failed when
-- it was the last attempt.
create or replace function app_private.record_webhook_attempt(
  delivery_id bigint, attempt_no integer, started_at timestamptz, duration_ms integer,
  status_code integer, error text, delivered boolean, last_attempt boolean
)
returns void
language sql
as $$
  insert into app_private.webhook_attempts (delivery_id, attempt_no, started_at, duration_ms, status_code, error)
  values (record_webhook_attempt.delivery_id, record_webhook_attempt.attempt_no, record_webhook_attempt.started_at,
          record_webhook_attempt.duration_ms, record_webhook_attempt.status_code, record_webhook_attempt.error);
  update app_private.webhook_deliveries d
  set attempts = record_webhook_attempt.attempt_no,
      status = case when record_webhook_attempt.delivered then 'delivered'
                    when record_webhook_attempt.last_attempt then 'failed' else 'pending' end,
      delivered_at = case when record_webhook_attempt.delivered then now() end
  where d.id = record_webhook_attempt.delivery_id;
$$;
--! EndIncluded 46_webhooks.sql
--! Included 60_grants_and_rls.sql
-- Privileges. The API connects as flow_authenticator (which can do nothing
-- by itself: NOINHERIT) and runs each request as one of the API roles:
--   flow_anonymous         no token: may read nothing;
--   flow_client, flow_therapist, flow_admin
--                          read the sessions row-level security lets them
--                          see, and take the flow steps step_permissions
--                          allows (the steps write as the schema owner);
--   flow_payment_provider  records payment outcomes;
--   flow_integration       reads every session's flow, works through the
--                          required actions, registers webhooks.
-- The roles are cluster-wide; server/db/setup.ts creates them (README,
-- "Roles"). The API roles own nothing and cannot bypass row-level security.

-- The API connects to this database as flow_authenticator (a database
-- created by `graphile-migrate reset` lets nobody else connect).
do $$
begin
  execute format('grant connect on database %I to flow_authenticator', current_database());
end;
$$;

-- Schemas: only app_public is reachable; app_hidden and app_private are
-- used through the SECURITY DEFINER steps.
revoke all on schema app_public, app_hidden, app_private from public;
grant usage on schema app_public
  to flow_anonymous, flow_client, flow_therapist, flow_admin, flow_payment_provider, flow_integration, flow_authenticator;

-- Tables: read-only (every write goes through a flow step). Anonymous
-- requests read nothing; the payment provider may query (its mutations
-- return the session) but row-level security shows it no row.
revoke all on all tables in schema app_public from public;
revoke all on all tables in schema app_public
  from flow_anonymous, flow_client, flow_therapist, flow_admin, flow_payment_provider, flow_integration, flow_authenticator;
grant select on
  app_public.sessions, app_public.payments, app_public.video_calls, app_public.session_forms,
  app_public.audit_entries, app_public.required_actions, app_public.payment_attempts,
  app_public.payment_states, app_public.session_states, app_public.video_call_states, app_public.form_states
  to flow_client, flow_therapist, flow_admin, flow_payment_provider, flow_integration;
-- The state lookup tables are the API's enums: it reads them when it starts.
grant select on
  app_public.payment_states, app_public.session_states, app_public.video_call_states, app_public.form_states
  to flow_authenticator;

-- Functions: nothing by default. Every flow step (and the payment callback,
-- the outbox's and the webhooks' functions, the change feed) may be called
-- by every API role: the step itself says who may take it
-- (app_private.authorize), with a clear NOT_AUTHORIZED rather than a bare
-- "permission denied".
revoke all on all functions in schema app_public, app_hidden, app_private from public;
grant execute on function app_public.current_user_id() to flow_client, flow_therapist, flow_admin, flow_payment_provider, flow_integration;
do $$
declare
  v_fn regprocedure;
begin
  for v_fn in
    select p.oid::regprocedure
    from pg_proc p join pg_namespace n on n.oid = p.pronamespace and n.nspname = 'app_public'
    where p.prorettype in ('app_public.sessions'::regtype, 'app_public.payment_callback_result'::regtype,
                           'app_public.required_actions'::regtype, 'app_public.webhook_registration'::regtype,
                           'app_public.change_feed_page'::regtype)
       or p.oid in ('app_public.unregister_webhook(uuid)'::regprocedure, 'app_public.change_feed_now()'::regprocedure)
  loop
    execute format('grant execute on function %s to flow_anonymous, flow_client, flow_therapist, flow_admin, flow_payment_provider, flow_integration', v_fn);
  end loop;
end;
$$;

-- Row-level security on every table of app_public. (The schema owner, who
-- runs the flow steps and the triggers, is not subject to it.)
do $$
declare
  v_table text;
begin
  foreach v_table in array array[
    'sessions', 'payments', 'video_calls', 'session_forms', 'audit_entries', 'required_actions', 'payment_attempts',
    'payment_states', 'session_states', 'video_call_states', 'form_states'
  ] loop
    execute format('alter table app_public.%I enable row level security', v_table);
    execute format('drop policy if exists select_visible on app_public.%I', v_table);
  end loop;
end;
$$;

-- A client sees their sessions, a therapist theirs, an admin all...
create policy select_visible on app_public.sessions for select
  using (app_private.can_see_session(client_id, therapist_id));
-- ...and everything under them.
create policy select_visible on app_public.payments for select
  using (exists (select 1 from app_public.sessions s where s.id = session_id));
create policy select_visible on app_public.video_calls for select
  using (exists (select 1 from app_public.sessions s where s.id = session_id));
create policy select_visible on app_public.session_forms for select
  using (exists (select 1 from app_public.sessions s where s.id = session_id));
create policy select_visible on app_public.audit_entries for select
  using (exists (select 1 from app_public.sessions s where s.id = session_id));
create policy select_visible on app_public.required_actions for select
  using (exists (select 1 from app_public.sessions s where s.id = session_id));
create policy select_visible on app_public.payment_attempts for select
  using (exists (select 1 from app_public.sessions s where s.id = session_id));
-- The states are no secret to anyone who may read.
create policy select_visible on app_public.payment_states for select using (true);
create policy select_visible on app_public.session_states for select using (true);
create policy select_visible on app_public.video_call_states for select using (true);
create policy select_visible on app_public.form_states for select using (true);

grant execute on function app_private.can_see_session(uuid, uuid), app_private.current_api_role()
  to flow_client, flow_therapist, flow_admin, flow_payment_provider, flow_integration;
grant usage on schema app_private to flow_client, flow_therapist, flow_admin, flow_payment_provider, flow_integration;

-- The change feed reads as its caller (row-level security), with these helpers.
-- (Anonymous requests read nothing, the change feed included.)
grant execute on function app_private.to_change_event(app_public.audit_entries, text)
  to flow_client, flow_therapist, flow_admin, flow_payment_provider, flow_integration;
grant execute on function app_private.parse_feed_cursor(text)
  to flow_client, flow_therapist, flow_admin, flow_payment_provider, flow_integration;

-- Integrations read what admins read (the API's reads granted in
-- 62_api_reads.sql and 63_api_rule_queries.sql included: run this file again
-- after changing those grants).
do $$
declare
  v_fn regprocedure;
begin
  for v_fn in
    select p.oid::regprocedure
    from pg_proc p join pg_namespace n on n.oid = p.pronamespace and n.nspname = 'app_public'
    where has_function_privilege('flow_admin', p.oid, 'execute')
  loop
    execute format('grant execute on function %s to flow_integration', v_fn);
  end loop;
end;
$$;
--! EndIncluded 60_grants_and_rls.sql
