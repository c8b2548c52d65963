from gatepass.cli import main


def test_demo_plays_the_whole_story_and_exits_0(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "Bob is now a member of Traders Club" in out
    assert "Sam's request was declined" in out
    assert "demo OK" in out
