-- Webhooks (tables: 20_integrations.sql). A webhook reads the change feed
-- from where it was registered, on its own cursor: each matching event
-- becomes a delivery, queued for graphile-worker (server/worker/webhooks.ts)
-- in the same transaction that moves the cursor on, so no event is missed
-- or queued twice. Deliveries are signed with the webhook's secret (README,
-- "Webhooks").

-- Whether an event type (payment.confirmed) matches one of the patterns
-- (payment.confirmed, payment.*, *).
create or replace function app_private.event_matches(event_type text, patterns text[])
returns boolean
language sql
immutable
as $$
  select '*' = any (event_matches.patterns)
      or event_matches.event_type = any (event_matches.patterns)
      or split_part(event_matches.event_type, '.', 1) || '.*' = any (event_matches.patterns);
$$;

create or replace function app_public.register_webhook(url text, event_types text[])
returns app_public.webhook_registration
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_hook app_private.webhooks;
  v_schema text;
  v_table text;
  v_constraint text;
  v_column text;
begin
  perform app_private.authorize('register_webhook', null);
  begin
    insert into app_private.webhooks (url, event_types, secret, registered_by, cursor)
    values (register_webhook.url, register_webhook.event_types,
            -- 244 random bits (gen_random_uuid draws from the strong random source).
            'whsec_' || replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''),
            coalesce(nullif(current_setting('flow.actor', true), ''), session_user),
            app_public.change_feed_now())
    returning * into v_hook;
  exception when check_violation or not_null_violation then
    get stacked diagnostics v_schema = schema_name, v_table = table_name, v_constraint = constraint_name, v_column = column_name;
    perform app_private.raise_invalid_argument(v_schema, v_table, v_constraint, v_column);
  end;
  return (v_hook.id, v_hook.url, v_hook.event_types, v_hook.secret)::app_public.webhook_registration;
end;
$$;
comment on function app_public.register_webhook(text, text[]) is
  E'@resultFieldName webhook\nRegisters a URL for the change events of the given types (payment.confirmed, payment.*, required_action.open, *), from now on. Returns its signing secret, once.';

create or replace function app_public.unregister_webhook(webhook_id uuid)
returns boolean
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform app_private.authorize('register_webhook', null);
  update app_private.webhooks w set active = false where w.id = unregister_webhook.webhook_id and w.active;
  return found;
end;
$$;
comment on function app_public.unregister_webhook(uuid) is 'Stops a webhook''s deliveries (those under way finish).';

-- Queues a delivery's job (one per delivery: the job key), at run_at.
create or replace function app_private.deliver_webhook_later(delivery_id bigint, run_at timestamptz default now())
returns void
language plpgsql
as $$
begin
  perform graphile_worker.add_job('webhook_deliver', json_build_object('deliveryId', deliver_webhook_later.delivery_id),
                                  run_at := deliver_webhook_later.run_at,
                                  job_key := 'webhook_deliver:' || deliver_webhook_later.delivery_id);
end;
$$;

-- Moves every active webhook's cursor on by up to max_events, queueing a
-- delivery job for each matching event; returns how many events it read.
-- Run as the schema owner (it reads every session's changes). Concurrent
-- dispatchers skip a webhook another is moving.
create or replace function app_private.dispatch_webhooks(max_events integer default 500)
returns integer
language plpgsql
as $$
declare
  v_hook app_private.webhooks;
  v_page app_public.change_feed_page;
  v_read integer := 0;
  v_delivery bigint;
  v_event app_public.change_event;
begin
  for v_hook in
    select * from app_private.webhooks w where w.active order by w.created_at for update skip locked
  loop
    v_page := app_public.change_feed(v_hook.cursor, dispatch_webhooks.max_events);
    foreach v_event in array v_page.events loop
      v_read := v_read + 1;
      continue when not app_private.event_matches(v_event.event_type, v_hook.event_types);
      insert into app_private.webhook_deliveries (webhook_id, event_id, event)
      values (v_hook.id, v_event.id, jsonb_build_object(
        'id', v_event.id, 'type', v_event.event_type, 'cursor', v_event.cursor, 'createdAt', v_event.created_at,
        'data', jsonb_build_object(
          'sessionId', v_event.session_id, 'entityType', v_event.entity_type, 'entityId', v_event.entity_id,
          'oldValue', v_event.old_value, 'newValue', v_event.new_value, 'step', v_event.step,
          'reason', v_event.reason, 'actor', v_event.actor, 'requestId', v_event.request_id)))
      on conflict (webhook_id, event_id) do nothing
      returning id into v_delivery;
      if v_delivery is not null then
        perform app_private.deliver_webhook_later(v_delivery);
      end if;
    end loop;
    update app_private.webhooks w set cursor = v_page.cursor where w.id = v_hook.id;
  end loop;
  return v_read;
end;
$$;

-- Records one attempt to deliver: delivered; or not, and tried again at
-- retry_at (its job queued here, under the delivery's job key); or, without
-- retry_at, failed for good.
drop function if exists app_private.record_webhook_attempt(bigint, integer, timestamptz, integer, integer, text, boolean, boolean);
create or replace function app_private.record_webhook_attempt(
  delivery_id bigint, attempt_no integer, started_at timestamptz, duration_ms integer,
  status_code integer, error text, delivered boolean, retry_at timestamptz
)
returns void
language plpgsql
as $$
begin
  insert into app_private.webhook_attempts (delivery_id, attempt_no, started_at, duration_ms, status_code, error)
  values (record_webhook_attempt.delivery_id, record_webhook_attempt.attempt_no, record_webhook_attempt.started_at,
          record_webhook_attempt.duration_ms, record_webhook_attempt.status_code, record_webhook_attempt.error);
  update app_private.webhook_deliveries d
  set attempts = record_webhook_attempt.attempt_no,
      status = case when record_webhook_attempt.delivered then 'delivered'
                    when record_webhook_attempt.retry_at is null then 'failed' else 'pending' end,
      delivered_at = case when record_webhook_attempt.delivered then now() end
  where d.id = record_webhook_attempt.delivery_id;
  if not record_webhook_attempt.delivered and record_webhook_attempt.retry_at is not null then
    perform app_private.deliver_webhook_later(record_webhook_attempt.delivery_id, record_webhook_attempt.retry_at);
  end if;
end;
$$;

-- What the server's dispatcher runs when the flow changes: the STK pushes
-- to queue, and the webhooks to move along; returns how much it did (it is
-- run again while that is a full batch).
create or replace function app_private.dispatch(max_items integer default 500)
returns integer
language sql
as $$
  select greatest(app_private.queue_stk_pushes(dispatch.max_items), app_private.dispatch_webhooks(dispatch.max_items));
$$;
