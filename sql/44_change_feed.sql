-- The change feed: the audit log in commit order, after a cursor, never
-- skipping a committed change. A bigserial id would skip one: a transaction
-- that took id 41 and commits after the one that took 42 is missed by a
-- reader that saw 42 and went on from there. So a cursor is made of
-- snapshots, not ids. A read takes the current snapshot S; it returns the
-- entries of the transactions that S sees committed and the reader's last
-- snapshot did not ("the window"); the next read starts from S. Each
-- transaction falls in exactly one window, and windows follow commit order.
-- Within a window entries come in id order: two changes of one session are
-- in commit order there too (the session's row lock makes the later change
-- wait for the earlier one's commit, so it takes a later id). A page that
-- does not exhaust its window continues it by id.
--
-- Cursor: v1:<from snapshot>/<window's snapshot, or empty when closed>/<last id>
-- Read as the caller (row-level security: everyone reads the changes of the
-- sessions they see).

-- (SECURITY DEFINER: its refusal reads app_hidden.error_codes, which the
-- feed's callers may not.)
create or replace function app_private.parse_feed_cursor(cursor text, out from_snapshot pg_snapshot, out upper_snapshot pg_snapshot, out last_id bigint)
language plpgsql
immutable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_parts text[];
begin
  if parse_feed_cursor.cursor is null then
    -- Before the first transaction: everything is after it.
    from_snapshot := '1:1:'::pg_snapshot;
    last_id := 0;
    return;
  end if;
  v_parts := regexp_match(parse_feed_cursor.cursor, '^v1:([0-9]+:[0-9]+:[0-9,]*)/([0-9]+:[0-9]+:[0-9,]*)?/([0-9]{1,18})$');
  if v_parts is null then
    perform app_private.raise_error('INVALID_CURSOR', format('Invalid cursor: %s', left(parse_feed_cursor.cursor, 200)),
                                    jsonb_build_object('argument', 'after'));
  end if;
  begin
    from_snapshot := v_parts[1]::pg_snapshot;
    upper_snapshot := v_parts[2]::pg_snapshot;
    last_id := v_parts[3]::bigint;
  exception when others then
    perform app_private.raise_error('INVALID_CURSOR', format('Invalid cursor: %s', left(parse_feed_cursor.cursor, 200)),
                                    jsonb_build_object('argument', 'after'));
  end;
end;
$$;

create or replace function app_private.to_change_event(e app_public.audit_entries, cursor text)
returns app_public.change_event
language sql
immutable
as $$
  select (e.id, to_change_event.cursor, e.entity_type || '.' || e.new_value, e.session_id, e.entity_type, e.entity_id,
          e.old_value, e.new_value, e.step, e.reason, e.actor, e.request_id, e.created_at)::app_public.change_event;
$$;

drop type if exists app_public.change_feed_page cascade;
create type app_public.change_feed_page as (
  events app_public.change_event[],
  cursor text,
  has_more boolean
);
comment on type app_public.change_feed_page is
  'A page of the change feed: the events, the cursor to read on from (always given, even with no event), and whether more are waiting already.';

-- A page of changes committed after `after` (null: from the beginning), at
-- most max_events (1 to 1000), optionally of one session.
create or replace function app_public.change_feed(after text default null, max_events integer default 100, session_id uuid default null)
returns app_public.change_feed_page
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
  v_from pg_snapshot;
  v_upper pg_snapshot;
  v_last bigint;
  v_limit integer := least(greatest(coalesce(change_feed.max_events, 100), 1), 1000);
  v_entries app_public.audit_entries[];
  v_more boolean;
  v_closed text;
begin
  select c.from_snapshot, c.upper_snapshot, c.last_id into v_from, v_upper, v_last
  from app_private.parse_feed_cursor(change_feed.after) c;
  -- (A stable function reads with its caller's snapshot: this one.)
  v_upper := coalesce(v_upper, pg_current_snapshot());
  v_entries := array(
    select e from app_public.audit_entries e
    where e.txid >= pg_snapshot_xmin(v_from)::text::bigint
      and not pg_visible_in_snapshot(e.txid::text::xid8, v_from)
      and pg_visible_in_snapshot(e.txid::text::xid8, v_upper)
      and e.id > v_last
      and (change_feed.session_id is null or e.session_id = change_feed.session_id)
    order by e.id
    limit v_limit + 1);
  v_more := cardinality(v_entries) > v_limit;
  v_closed := 'v1:' || v_upper::text || '//0';
  return (
    (select coalesce(array_agg(
              app_private.to_change_event(v_entries[i],
                case when not v_more and i = cardinality(v_entries) then v_closed
                     else 'v1:' || v_from::text || '/' || v_upper::text || '/' || (v_entries[i]).id end)
              order by i), '{}')
     from generate_series(1, least(cardinality(v_entries), v_limit)) i),
    case when v_more then 'v1:' || v_from::text || '/' || v_upper::text || '/' || (v_entries[v_limit]).id else v_closed end,
    v_more)::app_public.change_feed_page;
end;
$$;
comment on function app_public.change_feed(text, integer, uuid) is
  E'The changes committed after a cursor (none: from the beginning), in commit order, never skipping one: status changes of payments, sessions, video calls, forms and required actions, as the database committed them. Give `cursor` back as `after` to read on. Only the changes of sessions the viewer may see.';

-- A cursor for "now": the changes committed from now on come after it.
create or replace function app_public.change_feed_now()
returns text
language sql
stable
as $$
  select 'v1:' || pg_current_snapshot()::text || '//0';
$$;
comment on function app_public.change_feed_now() is
  'A cursor that starts the change feed now: only changes committed from now on come after it.';
