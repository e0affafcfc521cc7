--! Previous: sha1:8ab388849b03fc60fc39d0277f026bc974e332c4
--! Hash: sha1:e37fa3399402b0690813edae94cf8d2ae200d5da
--! Message: The outbox listed by status

--! Included 22_outbox_listing.sql
-- The outbox is listed by status (allRequiredActions(condition: { status: "open" })):
-- the API offers conditions only on indexed columns unless told.
comment on column app_public.required_actions.status is
  E'@behavior +filterBy +orderBy\nopen (waiting), claimed (a consumer works on it), completed.';
--! EndIncluded 22_outbox_listing.sql
