-- What the API reads beyond the tables' own fields.

-- A session's audit trail, oldest first (GraphQL: Session.auditTrail). Row-level
-- security applies: the caller sees the trail of the sessions they may see.
create or replace function app_public.sessions_audit_trail(session app_public.sessions)
returns setof app_public.audit_entries
language sql stable
as $$
  select a.* from app_public.audit_entries a where a.session_id = session.id order by a.id;
$$;
comment on function app_public.sessions_audit_trail(app_public.sessions) is
  'Every status change of the session, its payment, call and forms, oldest first.';
grant execute on function app_public.sessions_audit_trail(app_public.sessions) to flow_client, flow_therapist, flow_admin, flow_payment_provider;
