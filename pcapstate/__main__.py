from pcapstate.cli import run

run()
