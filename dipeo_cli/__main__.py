from dipeo_cli.launch import main

main()
