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
