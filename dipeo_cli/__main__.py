from dipeo_cli.cli import main

main()
