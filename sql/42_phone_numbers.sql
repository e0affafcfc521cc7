-- M-Pesa numbers. Payers write their number as 0712 345 678, +254712345678,
-- 254712345678 or 712345678; M-Pesa wants 2547XXXXXXXX (or 2541XXXXXXXX for
-- the newer ranges). Anything else is refused with INVALID_ARGUMENT.
create or replace function app_private.normalize_phone(phone text) returns text
language plpgsql immutable
as $$
declare
  v_digits text;
begin
  if phone is null then
    return null;
  end if;
  v_digits := regexp_replace(phone, '[\s().-]', '', 'g');
  v_digits := case
    when v_digits ~ '^\+254[17][0-9]{8}$' then substr(v_digits, 2)
    when v_digits ~ '^254[17][0-9]{8}$' then v_digits
    when v_digits ~ '^0[17][0-9]{8}$' then '254' || substr(v_digits, 2)
    when v_digits ~ '^[17][0-9]{8}$' then '254' || v_digits
  end;
  if v_digits is null then
    perform app_private.raise_error(
      'INVALID_ARGUMENT',
      format('Invalid argument payer_phone: %s. Allowed: a Kenyan mobile number such as 0712345678, +254712345678 or 254712345678', phone),
      jsonb_build_object('argument', 'payer_phone'));
  end if;
  return v_digits;
end;
$$;
comment on function app_private.normalize_phone(text) is
  'A Kenyan mobile number as M-Pesa wants it (2547XXXXXXXX or 2541XXXXXXXX), from the ways people write it.';
