from waka.controller._store import Store
from waka.controller._tokens import Identity, TokenBook, new_token, token_hash


def test_tokens_are_stored_only_as_hashes(tmp_path):
    store = Store.open(tmp_path / "waka.db")
    token = new_token("waka")
    store.write_now(lambda db: TokenBook.insert(db, token, Identity("user", "admin"), now=0))
    dump = "\n".join(store._db.conn.iterdump())
    assert token not in dump
    assert token_hash(token) in dump
    store.close()


def test_identify_knows_kind_and_subject_and_refuses_unknown(tmp_path):
    store = Store.open(tmp_path / "waka.db")
    user, node = new_token("waka"), new_token("wakanode")

    def seed(db):
        TokenBook.insert(db, user, Identity("user", "admin"), now=0)
        TokenBook.insert(db, node, Identity("node", "n1"), now=0)

    store.write_now(seed)
    book = TokenBook()
    store.read_now(book.load)
    assert book.identify(user) == Identity("user", "admin")
    assert book.identify(node) == Identity("node", "n1")
    assert book.identify(user + "x") is None
    assert book.identify("") is None
    store.close()


def test_expired_and_used_up_tokens_are_refused(tmp_path):
    store = Store.open(tmp_path / "waka.db")
    expired, single = new_token("j"), new_token("j")

    def seed(db):
        TokenBook.insert(db, expired, Identity("join", "c"), now=0, expires_at=100)
        TokenBook.insert(db, single, Identity("join", "c"), now=0, uses_left=1)

    store.write_now(seed)
    book = TokenBook(clock=lambda: 200)
    store.read_now(book.load)
    assert book.identify(expired) is None
    assert book.identify(single) == Identity("join", "c")
    store.write_now(lambda db: TokenBook.spend(db, single))
    store.read_now(book.load)
    assert book.identify(single) is None
    store.close()
