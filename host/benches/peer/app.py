"""The benchmark peer: the stack TaskFlow replaces.

FastAPI with `OAuth2PasswordBearer`, PyJWT and argon2 password hashes (pwdlib),
tasks in SQLite, written the way FastAPI's security tutorial ("OAuth2 with
Password (and hashing), Bearer with JWT tokens") and its SQL tutorial (a
database session per request, as a dependency) write them. It serves the
routes the benchmark drives: `POST /token` (password grant) and the
Bearer-checked `GET /tasks`, answering the same JSON shapes as TaskFlow.

Run by `just bench` under uvicorn; `PEER_DATABASE` names the SQLite file,
`PEER_SECRET` the HS256 key. `python app.py seed USER PASSWORD TASKS` creates
the schema, the user and its tasks before the server starts.
"""

import os
import sqlite3
import sys
from datetime import datetime, timedelta, timezone
from typing import Annotated

import jwt
from fastapi import Depends, FastAPI, HTTPException, status
from fastapi.security import OAuth2PasswordBearer, OAuth2PasswordRequestForm
from jwt.exceptions import InvalidTokenError
from pwdlib import PasswordHash

DATABASE = os.environ.get("PEER_DATABASE", "peer.db")
SECRET_KEY = os.environ.get("PEER_SECRET", "benchmark-secret-of-thirty-two-bytes-or-more")
ALGORITHM = "HS256"
ACCESS_TOKEN_EXPIRE_MINUTES = 30

password_hash = PasswordHash.recommended()
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="token")
app = FastAPI()


def get_db():
    db = sqlite3.connect(DATABASE, check_same_thread=False)
    db.row_factory = sqlite3.Row
    try:
        yield db
    finally:
        db.close()


DbDep = Annotated[sqlite3.Connection, Depends(get_db)]


def get_user(db: sqlite3.Connection, username: str):
    return db.execute(
        "SELECT id, username, password_hash, scopes FROM users WHERE username = ?",
        (username,),
    ).fetchone()


def authenticate_user(db: sqlite3.Connection, username: str, password: str):
    user = get_user(db, username)
    if user is None or not password_hash.verify(password, user["password_hash"]):
        return None
    return user


def create_access_token(data: dict, expires_delta: timedelta):
    to_encode = data.copy()
    to_encode.update({"exp": datetime.now(timezone.utc) + expires_delta})
    return jwt.encode(to_encode, SECRET_KEY, algorithm=ALGORITHM)


async def get_current_user(token: Annotated[str, Depends(oauth2_scheme)], db: DbDep):
    credentials_exception = HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail="Could not validate credentials",
        headers={"WWW-Authenticate": "Bearer"},
    )
    try:
        payload = jwt.decode(token, SECRET_KEY, algorithms=[ALGORITHM])
        username = payload.get("sub")
        if username is None:
            raise credentials_exception
    except InvalidTokenError:
        raise credentials_exception
    user = get_user(db, username)
    if user is None:
        raise credentials_exception
    if "tasks:read" not in payload.get("scope", "").split():
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail="Not enough permissions")
    return user


@app.post("/token")
async def login(form_data: Annotated[OAuth2PasswordRequestForm, Depends()], db: DbDep):
    user = authenticate_user(db, form_data.username, form_data.password)
    if not user:
        raise HTTPException(
            status_code=status.HTTP_400_BAD_REQUEST,
            detail={"error": "invalid_grant"},
        )
    expires = timedelta(minutes=ACCESS_TOKEN_EXPIRE_MINUTES)
    token = create_access_token({"sub": user["username"], "scope": user["scopes"]}, expires)
    return {
        "access_token": token,
        "token_type": "bearer",
        "expires_in": int(expires.total_seconds()),
        "scope": user["scopes"],
    }


@app.get("/tasks")
async def read_tasks(
    current_user: Annotated[sqlite3.Row, Depends(get_current_user)],
    db: DbDep,
    limit: int = 50,
    offset: int = 0,
):
    rows = db.execute(
        "SELECT id, title, description, status, created_at, updated_at FROM tasks"
        " WHERE owner = ? ORDER BY id LIMIT ? OFFSET ?",
        (current_user["id"], limit, offset),
    ).fetchall()
    (total,) = db.execute(
        "SELECT COUNT(*) FROM tasks WHERE owner = ?", (current_user["id"],)
    ).fetchone()
    return {"items": [dict(row) for row in rows], "total": total}


def seed(username: str, password: str, tasks: int) -> None:
    db = sqlite3.connect(DATABASE)
    db.executescript(
        """
        PRAGMA journal_mode = WAL;
        CREATE TABLE IF NOT EXISTS users (
            id INTEGER PRIMARY KEY, username TEXT UNIQUE NOT NULL,
            password_hash TEXT NOT NULL, scopes TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS tasks (
            id INTEGER PRIMARY KEY, owner INTEGER NOT NULL REFERENCES users(id),
            title TEXT NOT NULL, description TEXT, status TEXT NOT NULL,
            created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
        CREATE INDEX IF NOT EXISTS tasks_owner ON tasks(owner, id);
        """
    )
    cursor = db.execute(
        "INSERT INTO users (username, password_hash, scopes) VALUES (?, ?, ?)",
        (username, password_hash.hash(password), "tasks:read tasks:write"),
    )
    now = datetime.now(timezone.utc).isoformat()
    db.executemany(
        "INSERT INTO tasks (owner, title, description, status, created_at, updated_at)"
        " VALUES (?, ?, 'benchmark', 'todo', ?, ?)",
        [(cursor.lastrowid, f"task {i}", now, now) for i in range(tasks)],
    )
    db.commit()
    db.close()


if __name__ == "__main__" and sys.argv[1:2] == ["seed"]:
    seed(sys.argv[2], sys.argv[3], int(sys.argv[4]))
