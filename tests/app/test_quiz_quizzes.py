"""Quizzes as their users see them: list, search, pages, favourites, JSON, create, edit, delete, images."""

import os
import re

import pytest

from quiz.models import Attachment, Favourite, Quiz, Tip
from quiz.testing import image_upload, login_as, make_quiz, make_user, png_bytes, user

pytestmark = pytest.mark.django_db


def text(response):
    return response.content.decode()


def test_the_seed_quizzes_are_listed_as_anonymous(client):
    page = text(client.get("/quizzes"))
    for country in ("Italy", "Portugal", "Spain", "France"):
        assert f"Capital of {country}" in page
    assert "Anonymous" in page
    assert "Create New Question" not in page


def test_search_matches_words_in_order_ignoring_case(client):
    make_quiz("What is the capital city of Peru?", "Lima")
    page = text(client.get("/quizzes", {"search": "CAPITAL peru"}))
    assert "capital city of Peru" in page and "Capital of Italy" not in page
    assert "capital city of Peru" not in text(client.get("/quizzes", {"search": "peru capital"}))
    assert "No questions found" in text(client.get("/quizzes", {"search": "100%_"}))


def test_ten_per_page(client):
    for i in range(12):
        make_quiz(f"Extra question {i:02d}", "x")
    first, second = text(client.get("/quizzes")), text(client.get("/quizzes", {"pageno": 2}))
    assert first.count('/play">') == 10 and second.count('/play">') == 6
    assert "Page 2 of 2" in second
    assert text(client.get("/quizzes", {"pageno": "junk"})).count('/play">') == 10
    past_the_end = text(client.get("/quizzes", {"pageno": 99}))
    assert past_the_end.count('/play">') == 6 and "Page 2 of 2" in past_the_end


def test_favourites_filter_and_star(client):
    login_as(client, "pepe")
    pepe = user("pepe")
    Favourite.objects.create(user=pepe, quiz_id=2)
    page = text(client.get("/quizzes", {"searchfavourites": "1"}))
    assert "Capital of Portugal" in page and "Capital of Italy" not in page
    assert "&#9733;" in page  # the filled star
    client.post(f"/users/{pepe.id}/favourites/3", {"_method": "PUT", "redir": "/quizzes"})
    client.post(f"/users/{pepe.id}/favourites/3", {"_method": "PUT"})  # twice is no change
    assert set(Favourite.objects.values_list("quiz_id", flat=True)) == {2, 3}
    client.post(f"/users/{pepe.id}/favourites/2", {"_method": "DELETE"})
    assert set(Favourite.objects.values_list("quiz_id", flat=True)) == {3}


def test_json_list_has_no_answers_and_other_formats_are_406(client):
    data = client.get("/quizzes.json").json()
    assert [q["question"] for q in data][:1] == ["Capital of Italy"]
    assert all("answer" not in q for q in data)
    assert client.get("/quizzes.xml").status_code == 406
    assert client.get("/quizzes/1.xml").status_code == 406
    assert client.get("/quizzes.html").status_code == 200


def test_my_questions(client):
    login_as(client, "pepe")
    pepe = user("pepe")
    make_quiz("Pepe asks", "yes", author=pepe)
    page = text(client.get(f"/users/{pepe.id}/quizzes"))
    assert "My Questions" in page and "Pepe asks" in page and "Capital of Italy" not in page
    login_as(client, "admin")
    assert "Questions of pepe" in text(client.get(f"/users/{pepe.id}/quizzes"))


def test_create_with_an_image_and_show_it(client, quiz_media):
    login_as(client, "pepe")
    response = client.post("/quizzes", {"question": "Colour?", "answer": "red", "image": image_upload("My Pic.PNG")})
    quiz = Quiz.objects.get(question="Colour?")
    assert response["Location"] == f"/quizzes/{quiz.id}"
    assert quiz.author == user("pepe")
    attachment = quiz.attachment
    assert attachment.filename == "My Pic.PNG" and attachment.mime == "image/png"
    assert attachment.name.endswith(".png") and len(attachment.name) == 36
    assert (quiz_media / attachment.name).read_bytes() == png_bytes()
    page = text(client.get(f"/quizzes/{quiz.id}"))
    assert f'src="/uploads/{attachment.name}"' in page and "by pepe" not in page and "pepe" in page
    served = client.get(f"/uploads/{attachment.name}")
    assert served["Content-Type"] == "image/png" and b"".join(served.streaming_content) == png_bytes()


@pytest.mark.parametrize("fmt, ext", [("JPEG", "jpg"), ("GIF", "gif"), ("WEBP", "webp")])
def test_other_image_formats_keep_their_real_extension(client, fmt, ext):
    login_as(client, "pepe")
    client.post("/quizzes", {"question": "Fmt?", "answer": "x", "image": image_upload("x.png", png_bytes(fmt=fmt))})
    assert Quiz.objects.get(question="Fmt?").attachment.name.endswith("." + ext)


@pytest.mark.parametrize("name, content, message", [
    ("evil.png", b"<script>alert(1)</script>", "not an image"),
    ("doc.png", b"%PDF-1.4 not really", "not an image"),
    ("big.png", b"\x89PNG" + b"0" * (2 * 1024 * 1024 + 10), "larger than 2 MB"),
    ("pic.bmp", png_bytes(fmt="BMP"), "Only PNG, JPEG, GIF and WebP"),
])
def test_bad_uploads_reshow_the_form(client, quiz_media, name, content, message):
    login_as(client, "pepe")
    response = client.post("/quizzes", {"question": "Bad?", "answer": "x", "image": image_upload(name, content)})
    assert response.status_code == 200
    page = text(response)
    assert message in page and 'value="Bad?"' in page
    assert not Quiz.objects.filter(question="Bad?").exists()
    assert list(quiz_media.iterdir()) == []


def test_an_upload_while_the_shared_volume_is_away_is_refused_not_stored_locally(client, settings, tmp_path):
    # On a server whose volume is not mounted the media root does not exist.
    settings.MEDIA_ROOT = str(tmp_path / "volume" / "media")
    login_as(client, "pepe")
    response = client.post("/quizzes", {"question": "Lost?", "answer": "x", "image": image_upload("a.png")})
    assert response.status_code == 200
    assert "cannot be stored right now" in text(response)
    assert not Quiz.objects.filter(question="Lost?").exists()
    assert not (tmp_path / "volume").exists()


@pytest.mark.parametrize("form, message", [
    ({"question": "", "answer": "x"}, "question can&#x27;t be empty"),
    ({"question": "Q", "answer": "  "}, "answer can&#x27;t be empty"),
    ({"question": "Q" * 300, "answer": "x"}, "at most 255"),
    ({}, "question can&#x27;t be empty"),
])
def test_bad_quiz_input_reshows_the_form(client, form, message):
    login_as(client, "pepe")
    response = client.post("/quizzes", form)
    assert response.status_code == 200 and message in text(response)


def test_the_form_fields_are_the_originals(client):
    login_as(client, "pepe")
    page = text(client.get("/quizzes/new"))
    assert 'name="question"' in page and 'name="answer"' in page and 'name="image"' in page
    assert page.index('type="submit" value="Save"') < page.index('name="image"')
    nameless = [tag for tag in re.findall(r"<(?:input|button)[^>]*type=\"submit\"[^>]*>", page) if "name=" not in tag]
    assert 'value="Save"' in nameless[0]  # the original's checks press the first nameless submit


def test_fifty_quizzes_a_day(client):
    login_as(client, "pepe")
    pepe = user("pepe")
    Quiz.objects.bulk_create([Quiz(question=f"q{i}", answer="a", author=pepe) for i in range(50)])
    response = client.post("/quizzes", {"question": "one more", "answer": "a"})
    assert "at most 50 quizzes a day" in text(response)
    assert not Quiz.objects.filter(question="one more").exists()


@pytest.fixture
def committing(client, django_capture_on_commit_callbacks):
    """A POST whose on-commit actions (deleting files) run, though the test's transaction never commits."""

    def post(path, data):
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(path, data)

    return post


def test_edit_keeps_replaces_and_removes_the_image(client, quiz_media, committing):
    login_as(client, "pepe")
    client.post("/quizzes", {"question": "Img?", "answer": "x", "image": image_upload()})
    quiz = Quiz.objects.get(question="Img?")
    first = quiz.attachment.name
    assert 'name="keepAttachment"' in text(client.get(f"/quizzes/{quiz.id}/edit"))
    client.post(f"/quizzes/{quiz.id}", {"_method": "PUT", "question": "Img2?", "answer": "y", "keepAttachment": "1"})
    quiz.refresh_from_db()
    assert (quiz.question, quiz.answer, quiz.attachment.name) == ("Img2?", "y", first)
    committing(f"/quizzes/{quiz.id}", {"_method": "PUT", "question": "Img2?", "answer": "y",
                                       "image": image_upload("b.gif", png_bytes(fmt="GIF"))})
    quiz.refresh_from_db()
    assert quiz.attachment.name.endswith(".gif")
    assert not (quiz_media / first).exists()
    second = quiz.attachment.name
    committing(f"/quizzes/{quiz.id}", {"_method": "PUT", "question": "Img2?", "answer": "y"})
    quiz.refresh_from_db()
    assert quiz.attachment is None and not (quiz_media / second).exists()
    assert Attachment.objects.count() == 0


def test_bad_edit_reshows_the_form_and_changes_nothing(client):
    login_as(client, "admin")
    response = client.post("/quizzes/1", {"_method": "PUT", "question": "", "answer": "Rome"})
    assert response.status_code == 200 and "can&#x27;t be empty" in text(response)
    assert Quiz.objects.get(pk=1).question == "Capital of Italy"


def test_delete_removes_file_tips_and_favourites(client, quiz_media, committing):
    login_as(client, "pepe")
    client.post("/quizzes", {"question": "Gone?", "answer": "x", "image": image_upload()})
    quiz = Quiz.objects.get(question="Gone?")
    name = quiz.attachment.name
    Tip.objects.create(quiz=quiz, text="tip")
    Favourite.objects.create(user=user("pepe"), quiz=quiz)
    response = committing(f"/quizzes/{quiz.id}", {"_method": "DELETE"})
    assert response.status_code == 302
    assert not Quiz.objects.filter(pk=quiz.id).exists()
    assert not Tip.objects.exists() and not Favourite.objects.exists() and not Attachment.objects.exists()
    assert not os.path.exists(quiz_media / name)


def test_show_page_and_author_controls(client):
    ana = make_user("ana")
    quiz = make_quiz("Ana's question", "yes", author=ana)
    page = text(client.get(f"/quizzes/{quiz.id}"))
    assert "Ana&#x27;s question" in page and "ana" in page and 'id="answer">yes<' in page
    assert "/edit" not in page
    login_as(client, "ana")
    assert f'/quizzes/{quiz.id}/edit' in text(client.get(f"/quizzes/{quiz.id}"))
    assert f'/quizzes/{quiz.id}/edit' in text(client.get("/quizzes"))


def test_deleted_author_shows_as_anonymous(client):
    ana = make_user("ana")
    quiz = make_quiz("Orphan?", "x", author=ana)
    ana.delete()
    assert "Anonymous" in text(client.get(f"/quizzes/{quiz.id}"))
