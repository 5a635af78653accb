from mediation_core.cli import main

raise SystemExit(main(["serve", "routing"]))
