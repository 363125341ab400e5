-- Run once by the postgres image when its data volume is empty (mounted into /docker-entrypoint-initdb.d/,
-- executed by psql 15 as the superuser with ON_ERROR_STOP). Two databases on one server, each owned by a
-- role of its own: Airflow's metadata database and the lineage store share the server, not their rights.
--
-- Passwords come from the container's environment (docker-compose.yml passes AIRFLOW_DB_PASSWORD and
-- LINEAGE_DB_PASSWORD from .env); they are never echoed. Names default to airflow and lineage (the URLs
-- in docker-compose.yml use those); AIRFLOW_DB_NAME, AIRFLOW_DB_USER, LINEAGE_DB_NAME and LINEAGE_DB_USER
-- override them, which lets the tests run this very file on a shared PostgreSQL server.

\set ON_ERROR_STOP on

\getenv airflow_password AIRFLOW_DB_PASSWORD
\getenv lineage_password LINEAGE_DB_PASSWORD
\getenv airflow_db AIRFLOW_DB_NAME
\getenv airflow_user AIRFLOW_DB_USER
\getenv lineage_db LINEAGE_DB_NAME
\getenv lineage_user LINEAGE_DB_USER
\if :{?airflow_db} \else \set airflow_db airflow \endif
\if :{?airflow_user} \else \set airflow_user airflow \endif
\if :{?lineage_db} \else \set lineage_db lineage \endif
\if :{?lineage_user} \else \set lineage_user lineage \endif
\if :{?airflow_password} \else \set airflow_password '' \endif
\if :{?lineage_password} \else \set lineage_password '' \endif

-- A role without a password could not log in over the network: refuse before creating anything.
SELECT :'airflow_password' = '' AS airflow_password_missing, :'lineage_password' = '' AS lineage_password_missing
\gset
\if :airflow_password_missing
DO $$ BEGIN RAISE EXCEPTION 'AIRFLOW_DB_PASSWORD is not set (see .env.example)'; END $$;
\endif
\if :lineage_password_missing
DO $$ BEGIN RAISE EXCEPTION 'LINEAGE_DB_PASSWORD is not set (see .env.example)'; END $$;
\endif

CREATE ROLE :"airflow_user" LOGIN PASSWORD :'airflow_password';
CREATE ROLE :"lineage_user" LOGIN PASSWORD :'lineage_password';

-- Owners: each role creates its own tables (Airflow's `db migrate`, the lineage store's Alembic
-- migrations) in the public schema, which PostgreSQL 15 grants to the database owner.
CREATE DATABASE :"airflow_db" OWNER :"airflow_user";
CREATE DATABASE :"lineage_db" OWNER :"lineage_user";

-- Every role may connect to every database by default (PUBLIC); only the owner may connect here.
REVOKE ALL ON DATABASE :"airflow_db" FROM PUBLIC;
REVOKE ALL ON DATABASE :"lineage_db" FROM PUBLIC;
