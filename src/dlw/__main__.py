from dlw.cli import main

main()
