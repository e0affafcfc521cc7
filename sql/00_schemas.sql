-- Three schemas, as in graphile/starter:
--   app_public  the data the API exposes (flow tables, state lookups, audit log)
--               and the flow-step functions;
--   app_hidden  the rules tables and the DBA tools: readable, never exposed;
--   app_private trigger functions and helpers that nobody calls directly.
create schema app_public;
create schema app_hidden;
create schema app_private;

comment on schema app_public is 'The flow-integrity data and flow steps that the API exposes.';
comment on schema app_hidden is 'The rules of the state machines, as data, and the tools DBAs use to inspect them.';
comment on schema app_private is 'Trigger functions and helpers; not for direct use.';

-- Nobody but the owner creates objects in the public schema.
revoke create on schema public from public;
