-- The PostgreSQL role and database of tobira-hq (docs/HQ.md, "Storage: bbolt
-- or PostgreSQL"). Run once as a superuser on the database server:
--
--   sudo -u postgres psql -v password="'$(openssl rand -base64 24)'" -f tobira-hq.sql
--
-- then give tobira-hq the URL, e.g. in /etc/tobira/tobira-hq.toml:
--
--   store = "postgres://tobira_hq:PASSWORD@db.hq.example/tobira_hq?sslmode=verify-full"
--
-- and apply the schema with "tobira-hq migrate". The role owns its database and
-- nothing else: it creates and drops the daily or monthly events partitions
-- itself, so it needs no superuser right.

CREATE ROLE tobira_hq LOGIN PASSWORD :password;
CREATE DATABASE tobira_hq OWNER tobira_hq ENCODING 'UTF8' TEMPLATE template0;
\connect tobira_hq
-- PostgreSQL 15 no longer lets every role create in schema public.
ALTER SCHEMA public OWNER TO tobira_hq;
REVOKE ALL ON DATABASE tobira_hq FROM PUBLIC;

-- A read-only role for reports and the IT's queries.
CREATE ROLE tobira_hq_read NOLOGIN;
GRANT CONNECT ON DATABASE tobira_hq TO tobira_hq_read;
GRANT USAGE ON SCHEMA public TO tobira_hq_read;
ALTER DEFAULT PRIVILEGES FOR ROLE tobira_hq IN SCHEMA public GRANT SELECT ON TABLES TO tobira_hq_read;
