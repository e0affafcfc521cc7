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
