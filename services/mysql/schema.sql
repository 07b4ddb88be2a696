-- The AddService's table (database glarimy, table ums_users), as it writes it.
-- Default collation (case-insensitive, PAD SPACE): ums-find canonicalizes names
-- so that its Redis path agrees with it (docs/decisions.md).
CREATE DATABASE IF NOT EXISTS glarimy CHARACTER SET utf8mb4;
CREATE TABLE IF NOT EXISTS glarimy.ums_users (
  name  VARCHAR(64) NOT NULL PRIMARY KEY,
  phone BIGINT      NOT NULL,
  since DATETIME(3) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
