#!/bin/bash
# Run once by the mysql image's entrypoint (files in /docker-entrypoint-initdb.d/, after
# 01-schema.sql, which is services/mysql/schema.sql) on an empty data directory.
# Creates ums-find's two MySQL users from the environment that docker-compose.yml passes:
#   UMS_MYSQL_USER / UMS_MYSQL_PASSWORD                       read-only: SELECT on glarimy.ums_users (the API)
#   UMS_ADDSERVICE_MYSQL_USER / UMS_ADDSERVICE_MYSQL_PASSWORD  writer: the AddService stand-in (`ums-find seed`)
# The values come from the git-ignored .env (template: docker/compose.env.example); none is in the repository.
set -eo pipefail  # no -u: the entrypoint sources this file if it is not executable

: "${UMS_MYSQL_USER:?}" "${UMS_MYSQL_PASSWORD:?}" "${UMS_ADDSERVICE_MYSQL_USER:?}" "${UMS_ADDSERVICE_MYSQL_PASSWORD:?}"
: "${MYSQL_ROOT_PASSWORD:?}"

sql_string() {  # a single-quoted SQL string literal (quotes and backslashes escaped)
  local s=${1//\\/\\\\}
  printf "'%s'" "${s//\'/\'\'}"
}

ro_user=$(sql_string "$UMS_MYSQL_USER")
ro_password=$(sql_string "$UMS_MYSQL_PASSWORD")
rw_user=$(sql_string "$UMS_ADDSERVICE_MYSQL_USER")
rw_password=$(sql_string "$UMS_ADDSERVICE_MYSQL_PASSWORD")

# The entrypoint's temporary server listens on its socket only; root logs in there.
MYSQL_PWD=$MYSQL_ROOT_PASSWORD mysql --protocol=socket -uroot <<SQL
CREATE USER IF NOT EXISTS ${ro_user}@'%' IDENTIFIED BY ${ro_password};
GRANT SELECT ON glarimy.ums_users TO ${ro_user}@'%';
CREATE USER IF NOT EXISTS ${rw_user}@'%' IDENTIFIED BY ${rw_password};
GRANT SELECT, INSERT, UPDATE, DELETE ON glarimy.ums_users TO ${rw_user}@'%';
FLUSH PRIVILEGES;
SQL
echo "02-users.sh: created ${UMS_MYSQL_USER} (read-only) and ${UMS_ADDSERVICE_MYSQL_USER} (writer)"
