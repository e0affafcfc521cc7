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

-- Ends a claim the consumer holds (ACTION_NOT_CLAIMED otherwise): the
-- action completed with its result, or released to the queue. The one body
-- of complete_required_action and release_required_action.
create or replace function app_private.end_claim(step text, action_id bigint, consumer text, to_status text, result jsonb)
returns app_public.required_actions
language plpgsql
as $$
declare
  v_consumer text := app_private.action_consumer(end_claim.consumer);
  v_action app_public.required_actions;
begin
  perform app_private.begin_step(end_claim.step);
  perform app_private.authorize(end_claim.step, null);
  select * into v_action from app_public.required_actions a where a.id = end_claim.action_id for update;
  if not found then
    perform app_private.raise_error('NOT_FOUND', format('Required action not found: %s', end_claim.action_id),
                                    jsonb_build_object('entity', 'required_action', 'id', end_claim.action_id));
  end if;
  if v_action.status <> 'claimed' or v_action.claimed_by <> v_consumer then
    perform app_private.raise_error('ACTION_NOT_CLAIMED',
      format('Required action %s is not claimed by %s: %s', v_action.id, v_consumer,
             case v_action.status when 'claimed' then 'claimed by ' || v_action.claimed_by else v_action.status end),
      jsonb_build_object('entity', 'required_action', 'id', v_action.id, 'status', v_action.status));
  end if;
  update app_public.required_actions a
  set status = end_claim.to_status, claimed_by = null, claim_expires_at = null,
      completed_at = case when end_claim.to_status = 'completed' then now() end,
      result = case when end_claim.to_status = 'completed' then end_claim.result end
  where a.id = v_action.id
  returning * into v_action;
  perform app_private.end_step();
  return v_action;
end;
$$;

drop function if exists app_private.lock_claimed_action(bigint, text); -- (now in end_claim)

create or replace function app_public.complete_required_action(action_id bigint, result jsonb default null, consumer text default null)
returns app_public.required_actions
language sql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
  select app_private.end_claim('complete_required_action', complete_required_action.action_id,
                               complete_required_action.consumer, 'completed', complete_required_action.result);
$$;
comment on function app_public.complete_required_action(bigint, jsonb, text) is
  E'@resultFieldName requiredAction\nCompletes a required action the consumer holds a claim on, with its result. ACTION_NOT_CLAIMED when the consumer does not hold it (its claim expired and another took it, say).';

create or replace function app_public.release_required_action(action_id bigint, consumer text default null)
returns app_public.required_actions
language sql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
  select app_private.end_claim('release_required_action', release_required_action.action_id,
                               release_required_action.consumer, 'open', null);
$$;
comment on function app_public.release_required_action(bigint, text) is
  E'@resultFieldName requiredAction\nGives a claimed required action back to the queue, for another consumer.';
