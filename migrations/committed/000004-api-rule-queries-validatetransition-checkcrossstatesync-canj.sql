--! Previous: sha1:671094f1ba26a932017fd54103921ee086d1634f
--! Hash: sha1:8fcfeb92a54126161406f2035018fc3b766d03eb
--! Message: API rule queries: validateTransition, checkCrossStateSync, canJoinCall, availableTransitions

--! Included 17_api_types.sql
-- The shapes the API's rule queries answer in.
create type app_public.transition_check as (
  allowed boolean,
  code text,
  reason text,
  message text,
  allowed_states text[]
);
comment on type app_public.transition_check is
  'Whether a status change is allowed; if not, the error code, reason and message it is refused with, and the allowed next states.';

create type app_public.sync_check as (
  valid boolean,
  violations text[],
  required_actions text[]
);
comment on type app_public.sync_check is
  'Whether a payment, session and video call state may stand together, the rules they break, and the actions the payment state requires.';

create type app_public.call_access as (
  allowed boolean,
  code text,
  message text
);
comment on type app_public.call_access is
  'Whether the session''s video call may be joined now, and if not, the error code and message a join gets.';

create type app_public.available_step as (
  step text,
  to_state text
);
comment on type app_public.available_step is
  'A flow step the viewer may take on the session now (the mutation of the same name), and the state it moves to.';

-- Which state each flow step moves its entity to: with step_permissions, it
-- says what a viewer may do next.
create table app_hidden.flow_steps (
  step text primary key,
  entity_type text not null references app_hidden.entity_types,
  to_state text not null,
  note text not null
);
comment on table app_hidden.flow_steps is 'The entity and state each flow step moves to.';
insert into app_hidden.flow_steps (step, entity_type, to_state, note) values
  ('approve_session',        'session', 'approved',          'approve_session'),
  ('initiate_payment',       'payment', 'initiated',         'initiate_payment (also the retry after a failure)'),
  ('record_payment_outcome', 'payment', 'confirmed',         'record_payment_outcome (confirmed or failed)'),
  ('complete_form',          'form',    'completed',         'complete_form'),
  ('join_call',              'video',   'waiting_for_participants', 'join_call (also when the call already waits or runs)'),
  ('start_session',          'session', 'in_progress',       'start_session'),
  ('complete_session',       'session', 'completed',         'complete_session'),
  ('cancel_session',         'session', 'cancelled',         'cancel_session'),
  ('mark_no_show:client',    'session', 'no_show_client',    'mark_no_show(client)'),
  ('mark_no_show:therapist', 'session', 'no_show_therapist', 'mark_no_show(therapist)'),
  ('refund_payment',         'payment', 'refunded',          'refund_payment'),
  ('report_call_failure',    'video',   'failed',            'report_call_failure');
--! EndIncluded 17_api_types.sql
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
             and (p.scope = 'any'
                  or (p.role = 'client' and session.client_id = app_public.current_user_id())
                  or (p.role = 'therapist' and session.therapist_id = app_public.current_user_id()))))
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
