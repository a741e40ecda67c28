DROP SCHEMA devopstic_auth CASCADE;
