-- The outbox is listed by status (allRequiredActions(condition: { status: "open" })):
-- the API offers conditions only on indexed columns unless told.
comment on column app_public.required_actions.status is
  E'@behavior +filterBy +orderBy\nopen (waiting), claimed (a consumer works on it), completed.';
