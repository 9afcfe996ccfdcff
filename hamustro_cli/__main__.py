from hamustro_cli.entry import main

main()
