--! Previous: sha1:7ba02d4303e44979684408b329215b3bcc7ca29a
--! Hash: sha1:50f096e4808a3bc032389e4837f8cecb443bf8cd
--! Message: One definition of a user's own session

--! Included 41_authorization.sql
-- Who is calling. The API runs each request as one of the API roles
-- (SET ROLE, from the JWT), with the user's id in jwt.claims.user_id. Inside
-- a SECURITY DEFINER flow step current_user is the schema owner, but the
-- `role` setting still names the role the request runs as.

-- The caller's API role ('client', 'therapist', 'admin', 'payment_provider',
-- 'anonymous'), or null for anyone else: a DBA as the schema owner or a
-- superuser.
create or replace function app_private.current_api_role() returns text
language sql stable
as $$
  select case current_setting('role', true)
    when 'flow_client' then 'client'
    when 'flow_therapist' then 'therapist'
    when 'flow_admin' then 'admin'
    when 'flow_payment_provider' then 'payment_provider'
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

-- Whether the caller may see a session's flow: admins every session, a
-- client or a therapist their own. (The row-level security policies use it;
-- a DBA is not subject to them.)
create or replace function app_private.can_see_session(client_id uuid, therapist_id uuid) returns boolean
language sql stable
as $$
  select app_private.current_api_role() = 'admin' or app_private.owns_session(can_see_session.client_id, can_see_session.therapist_id);
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

grant execute on function app_private.owns_session(uuid, uuid) to flow_client, flow_therapist, flow_admin, flow_payment_provider;
--! EndIncluded 41_authorization.sql
--! Included 63_api_rule_queries.sql
-- The reference's validation functions, as queries the API exposes, answered
-- from the same rules tables the triggers enforce. They read app_hidden, so
-- they run as the schema owner (SECURITY DEFINER, pinned search_path); they
-- reveal rules, never rows the caller may not see.

-- Query.validateTransition(entityType, fromState, toState)
create or replace function app_public.validate_transition(entity_type text, from_state text, to_state text)
returns app_public.transition_check
language sql stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select c.allowed, c.code, c.reason, c.message, c.allowed_states
  from app_hidden.check_transition(validate_transition.entity_type, validate_transition.from_state, validate_transition.to_state) c;
$$;
comment on function app_public.validate_transition(text, text, text) is
  'Whether an entity (payment, session, video, form) may change from one state to another, and why not (the reference''s validate…Transition).';

-- Query.checkCrossStateSync(paymentState, sessionState, videoState): as the
-- reference's validateCrossStateSync, the video rule only when a video state
-- is given.
create or replace function app_public.check_cross_state_sync(payment_state text, session_state text, video_state text default null)
returns app_public.sync_check
language sql stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  with broken as (
    select f.rule, f.message
    from app_hidden.flow_violations(null, check_cross_state_sync.session_state,
                                    check_cross_state_sync.payment_state, check_cross_state_sync.video_state) f
    where f.rule in ('payment_session', 'session_video')
  )
  select not exists (select 1 from broken),
         coalesce((select array_agg(b.message order by b.rule) from broken b), '{}'),
         coalesce(app_private.payment_actions(check_cross_state_sync.payment_state), '{}');
$$;
comment on function app_public.check_cross_state_sync(text, text, text) is
  'Whether payment, session and (optionally) video call states may stand together, and the actions the payment state requires (the reference''s validateCrossStateSync).';

-- Session.canJoinCall
create or replace function app_public.sessions_can_join_call(session app_public.sessions)
returns app_public.call_access
language sql stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select a.can_join_call, a.refusal_code,
         case when not a.can_join_call then format('FORBIDDEN: %s (session=%s)', a.refusal_message, session.status) end
  from app_hidden.session_call_access a
  where a.session_state = session.status;
$$;
comment on function app_public.sessions_can_join_call(app_public.sessions) is
  'Whether the video call may be joined now; if not, the code and message a join would get.';

-- Session.availableTransitions: the flow steps this viewer may take now: the
-- caller's role may take the step on this session (step_permissions), the
-- step's transition is allowed from its entity's current state, and, for a
-- payment or call step, the session is, or can move in the same step to, a
-- state that the new payment or call state may stand with (for joining the
-- call: the session allows it).
create or replace function app_public.sessions_available_transitions(session app_public.sessions)
returns setof app_public.available_step
language sql stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select fs.step, fs.to_state
  from app_hidden.flow_steps fs
  join app_hidden.step_permissions p on p.step = fs.step
  left join app_public.payments pay on pay.session_id = session.id
  left join app_public.video_calls call on call.session_id = session.id
  where (app_private.current_api_role() is null
         or (p.role = app_private.current_api_role()
             and (p.scope = 'any' or app_private.owns_session(session.client_id, session.therapist_id))))
    and case fs.entity_type
          when 'session' then app_private.is_transition('session', session.status, fs.to_state)
          when 'payment' then app_private.is_transition('payment', pay.status, fs.to_state)
            and exists (select 1 from app_public.session_states st
                        where (st.name = session.status or app_private.is_transition('session', session.status, st.name))
                          and app_private.payment_session_in_sync(fs.to_state, st.name))
          when 'video' then
            case fs.step when 'join_call' then (select a.can_join_call from app_hidden.session_call_access a where a.session_state = session.status)
                         else app_private.is_transition('video', call.status, fs.to_state)
                              and exists (select 1 from app_public.session_states st
                                          where (st.name = session.status or app_private.is_transition('session', session.status, st.name))
                                            and app_private.session_video_in_sync(st.name, fs.to_state)) end
          when 'form' then exists (select 1 from app_public.session_forms f where f.session_id = session.id and f.status <> 'completed')
        end
  group by fs.step, fs.to_state
  order by fs.step;
$$;
comment on function app_public.sessions_available_transitions(app_public.sessions) is
  'The flow steps the viewer may take on this session now, and the state each moves to.';

do $$
declare
  v_fn text;
begin
  foreach v_fn in array array[
    'app_public.validate_transition(text, text, text)', 'app_public.check_cross_state_sync(text, text, text)',
    'app_public.sessions_can_join_call(app_public.sessions)', 'app_public.sessions_available_transitions(app_public.sessions)'
  ] loop
    execute format('revoke all on function %s from public', v_fn);
    execute format('grant execute on function %s to flow_client, flow_therapist, flow_admin, flow_payment_provider', v_fn);
  end loop;
end;
$$;
--! EndIncluded 63_api_rule_queries.sql
