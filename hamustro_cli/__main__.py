from hamustro_cli.cli import main

main()
