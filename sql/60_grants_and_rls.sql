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
