-- Re-runnable while in development: start from nothing.
drop schema if exists app_public, app_hidden, app_private cascade;

--!include 00_schemas.sql
--!include 10_rules_tables.sql
--!include 11_flow_tables.sql
--!include 12_audit_log.sql
--!include 13_error_codes.sql
--!include 14_rules_data.sql
--!include 15_compiled_rules.sql
--!include 30_errors.sql
--!include 31_transition_rules.sql
--!include 32_audit_append_only.sql
--!include 33_cross_state_sync.sql
--!include 34_status_change_trigger.sql
--!include 40_flow_steps.sql
--!include 50_dba_tools.sql
