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
