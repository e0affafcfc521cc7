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
