"""The article's FindService, as written: domain.py, data.py and app.py of "Python microservices using
Flask on Kubernetes" (../shared/seed/), in one file, run by its own venv (requirements.txt beside it).

Changed from the article, and only this: the MySQL host, port, user and password come from the
environment (the article has them in code: mysqldb, root, admin) and waitress listens on
127.0.0.1:$SEED_PORT instead of 0.0.0.0:8080. Everything on the request path is the article's:
Flask 2.1, waitress with its defaults (4 threads), `mysql.connector.connect(...)` per request,
`SELECT * FROM ums_users where name=%s`, `cursor.rowcount == -1` for "not found". (The
article shows the controller twice; this is its first version, `user.name.value`: the second one
calls `getValue()`, which its Name does not have.)
"""

import datetime
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass

from flask import Flask, abort, jsonify
from mysql.connector import Error, connect
from waitress import serve

# ---- domain.py ----


@dataclass(frozen=True)
class Name:
    value: str

    def __post_init__(self):
        if self.value is None or len(self.value.strip()) < 8 or len(self.value.strip()) > 32:
            raise ValueError("Invalid Name")


@dataclass(frozen=True)
class PhoneNumber:
    value: int

    def __post_init__(self):
        if self.value < 9000000000:
            raise ValueError("Invalid Phone Number")


@dataclass
class User:
    _name: Name
    _phone: PhoneNumber
    _since: datetime.datetime

    def __post_init__(self):
        if self._name is None or self._phone is None:
            raise ValueError("Invalid user")
        if self._since is None:
            self.since = datetime.datetime.now()

    @property
    def name(self) -> Name:
        return self._name

    @property
    def phone(self) -> PhoneNumber:
        return self._phone

    @property
    def since(self) -> datetime.datetime:
        return self._since


class UserNotFoundException(Exception):
    pass


class UserRepository(ABC):
    @abstractmethod
    def fetch(self, name: Name) -> User:
        pass


# ---- data.py ----


class UserRepositoryImpl(UserRepository):
    def fetch(self, name: Name) -> User:
        try:
            with connect(
                host=os.environ["UMS_MYSQL_HOST"],
                port=int(os.environ["UMS_MYSQL_PORT"]),
                user=os.environ["UMS_MYSQL_USER"],
                password=os.environ["UMS_MYSQL_PASSWORD"],
                database="glarimy",
            ) as connection:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT * FROM ums_users where name=%s", (name.value,))
                    row = cursor.fetchone()
                    if cursor.rowcount == -1:
                        raise UserNotFoundException()
                    else:
                        return User(Name(row[0]), PhoneNumber(row[1]), row[2])
        except Error as e:
            raise e


# ---- app.py ----


class UserRecord:
    def toJSON(self):
        return {"name": self.name, "phone": self.phone, "since": self.since}


class UserController:
    def __new__(self):
        if not hasattr(self, "instance"):
            self.instance = super().__new__(self)
        return self.instance

    def __init__(self):
        self._repo = UserRepositoryImpl()

    def find(self, name: str):
        try:
            user: User = self._repo.fetch(Name(name))
            record: UserRecord = UserRecord()
            record.name = user.name.value
            record.phone = user.phone.value
            record.since = user.since
            return record
        except UserNotFoundException:
            return None


app = Flask(__name__)


@app.route("/user/<name>")
def get(name):
    controller = UserController()
    record = controller.find(name)
    if record is None:
        abort(404)
    else:
        resp = jsonify(record.toJSON())
        resp.status_code = 200
        return resp


if __name__ == "__main__":
    serve(app, host="127.0.0.1", port=int(os.environ["SEED_PORT"]))
