"""Slot word lists of the domain grammar in :mod:`asr_kd.data.text`.

:data:`WORDS` maps a slot name to whitespace-separated entries. An entry is one
lowercase word, or several joined by ``_`` (``post_office``). A count noun may give
its plural after a ``/`` (``knife/knives``); without one the plural follows the
regular English spelling rule. The sentence templates that use these slots are in
``grammar.txt`` next to this file. Every word the grammar can produce is in CMUdict
(``tests/data/test_text.py`` checks it).
"""

WORDS: dict[str, str] = {
    # --- people and places -------------------------------------------------------------
    "first_name": """
        james john robert michael william david richard thomas daniel paul andrew kevin
        george peter henry frank jack oliver harry samuel simon martin victor oscar mary
        linda elizabeth susan sarah karen nancy lisa emily laura helen anna ruth emma
        sophie lucy alice grace olivia hannah julia diana
    """,
    "surname": """
        smith johnson brown taylor miller wilson moore anderson jackson white harris
        clark lewis walker young allen king wright scott green baker adams nelson hill
        campbell mitchell carter evans turner parker cook morgan cooper bell kelly wood
        watson bennett gray
    """,
    "title": "doctor professor mister miss captain detective",
    "person": """
        teacher doctor nurse engineer pilot driver farmer lawyer chef baker artist
        writer singer student scientist manager builder plumber painter officer judge
        waiter mechanic dentist architect gardener journalist musician actor tourist
        passenger visitor customer neighbor child/children player volunteer
    """,
    "family": "mother father brother sister son daughter wife/wives husband friend boss",
    "city": """
        london paris berlin madrid rome vienna prague dublin lisbon athens oslo
        stockholm warsaw brussels amsterdam geneva munich milan venice barcelona
        edinburgh glasgow manchester boston chicago denver seattle dallas houston
        atlanta miami toronto montreal sydney melbourne tokyo delhi cairo moscow lima
    """,
    "country": """
        france germany spain italy china japan india brazil canada mexico egypt kenya
        norway sweden poland greece portugal ireland scotland england russia turkey
        peru australia
    """,
    "color": "red blue green yellow orange purple pink brown black white gray silver golden",
    # --- time and numbers --------------------------------------------------------------
    "weekday": "monday tuesday wednesday thursday friday saturday sunday",
    "month": """
        january february march april may june july august september october november
        december
    """,
    "season": "spring summer autumn winter",
    "holiday": "christmas easter halloween thanksgiving",
    "part_of_day": "morning afternoon evening",
    "digit": "one two three four five six seven eight nine",
    "digit2": "two three four five six seven eight nine",
    "teen": "ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen",
    "tens": "twenty thirty forty fifty sixty seventy eighty ninety",
    "hour": "one two three four five six seven eight nine ten eleven twelve",
    "ordinal_unit": "first second third fourth fifth sixth seventh eighth ninth",
    "ordinal_teen": """
        tenth eleventh twelfth thirteenth fourteenth fifteenth sixteenth seventeenth
        eighteenth nineteenth twentieth thirtieth
    """,
    "time_unit": "minute hour day week month year",
    "currency": "dollar pound euro",
    # --- weather -----------------------------------------------------------------------
    "precip": "rain snow sleet hail drizzle fog frost",
    "weather_adj": """
        sunny cloudy rainy windy foggy snowy stormy icy wet warm cold hot cool mild
        chilly freezing dry pleasant
    """,
    "temp_adj": "cold hot warm cool chilly",
    "superlative": "wettest coldest warmest hottest driest",
    "weather_event": "storm thunderstorm gale blizzard tornado/tornadoes hurricane",
    "weather_verb": "rain snow freeze",
    "weather_verb3": "rains snows freezes",
    "weather_noun": "temperature pressure humidity",
    "rise": "rise fall drop climb",
    "region": "north south east west northeast northwest southeast southwest coast mountains",
    "compass": "north south east west",
    "warm_item": "coat scarf hat sweater jacket raincoat umbrella",
    "weather_plan": "stay_at_home cancel_the_picnic take_the_bus work_from_home walk_to_work",
    # --- travel ------------------------------------------------------------------------
    "vehicle": "train bus ferry taxi plane tram coach boat ship",
    "trip": "flight journey trip ride voyage",
    "transport_place": "station airport terminal harbor port",
    "travel_adj": "delayed canceled late early full crowded quiet comfortable",
    "travel_item": "ticket passport suitcase bag map timetable wallet",
    "landmark": """
        museum cathedral bridge castle library market park square tower church
        hospital hotel cinema theater stadium university bank post_office gallery zoo
    """,
    "street": "street road avenue lane",
    "turn": "left right",
    # --- cooking and food --------------------------------------------------------------
    "produce": """
        apple banana orange lemon peach pear plum cherry grape strawberry melon
        carrot onion potato/potatoes tomato/tomatoes pepper cucumber mushroom pumpkin
        cabbage
    """,
    "baked": "biscuit cookie muffin pancake sandwich dumpling pie cake tart bun roll scone",
    "food_mass": """
        rice bread butter cheese milk cream flour sugar salt honey jam pasta chocolate
        coffee tea juice yogurt garlic spinach lettuce chicken beef pork salmon fish
        bacon cereal oil mustard sauce
    """,
    "dish": "soup stew curry salad omelet pizza risotto lasagna casserole pie cake",
    "prep_verb": "chop slice dice peel wash grate rinse",
    "heat_verb": "boil fry bake roast grill steam",
    "utensil": "knife/knives spoon fork ladle whisk sieve grater spatula",
    "cookware": "pan pot bowl tray saucepan dish",
    "taste_adj": "sweet sour bitter salty spicy fresh crispy creamy tender juicy delicious ripe",
    "meal": "breakfast lunch dinner supper brunch dessert",
    "measure": "cup spoonful handful teaspoon tablespoon gram ounce",
    # --- shopping ----------------------------------------------------------------------
    "clothing": "shirt jacket coat dress skirt sweater scarf hat glove sock shoe boot",
    "goods": """
        lamp chair table sofa mirror clock rug pillow blanket towel candle radio
        camera phone laptop computer printer television battery/batteries bicycle watch
        backpack
    """,
    "shop": "supermarket bakery pharmacy bookstore butcher florist market shop",
    "shop_adj": "cheap expensive new small large cheaper bigger smaller lighter",
    "fit_adj": "small big tight loose long short",
    "container": "box bag packet bottle jar can carton",
    # --- sports ------------------------------------------------------------------------
    "team": """
        tigers lions eagles bears wolves hawks falcons panthers sharks rangers giants
        rockets pirates knights
    """,
    "sport": """
        football soccer tennis golf rugby cricket baseball basketball hockey boxing
        cycling swimming
    """,
    "beat_verb": "beat defeated thrashed edged",
    "match": "match game final semifinal tournament championship",
    "sport_person": "player captain coach goalkeeper striker referee champion",
    "praise_adj": "brilliant superb excellent outstanding impressive",
    "low": "nil one two",
    # --- calendar ----------------------------------------------------------------------
    "event": """
        meeting appointment interview conference presentation lecture workshop party
        dinner call lesson concert
    """,
    "book_verb": "schedule book arrange plan confirm",
    "move_verb": "move postpone",
    "office_room": "office kitchen library hall lobby studio classroom canteen",
    # --- health ------------------------------------------------------------------------
    "body_part": """
        head back neck knee shoulder arm leg foot/feet hand ankle wrist elbow
        stomach throat eye tooth/teeth
    """,
    "symptom": "headache fever cough rash cramp infection allergy",
    "medicine": "tablet pill capsule vitamin",
    "health_adj": "tired sick dizzy weak healthy exhausted",
    "health_place": "clinic hospital pharmacy surgery",
    "exercise": "jogging swimming walking cycling running climbing skiing dancing rowing",
    "advice": """
        drink_more_water get_more_sleep eat_more_fruit stop_smoking see_a_doctor
        take_a_break stay_in_bed
    """,
    # --- science -----------------------------------------------------------------------
    "planet": "mercury venus earth mars jupiter saturn uranus neptune pluto",
    "element": "hydrogen helium carbon oxygen nitrogen iron copper gold silver sodium zinc lead",
    "sci_thing": """
        atom molecule cell gene protein star galaxy comet asteroid particle crystal
        fossil virus volcano
    """,
    "scientist": "physicist chemist biologist astronomer geologist researcher",
    "sci_verb": "discovered measured observed detected studied analyzed tested mapped",
    "sci_field": "physics chemistry biology astronomy geology genetics ecology mathematics",
    "sci_adj": "tiny massive distant ancient rare unusual strange dense frozen",
    "sci_tool": "telescope microscope satellite probe laser",
    "quantity": "mass weight volume density temperature length",
    # --- home --------------------------------------------------------------------------
    "house_room": """
        kitchen bedroom bathroom garage garden attic basement hallway cellar porch
        balcony
    """,
    "furniture": "sofa bed table chair desk wardrobe bookcase cupboard shelf/shelves stool",
    "appliance": "refrigerator dishwasher washer dryer oven microwave kettle heater",
    "clean_verb": "clean tidy wash dust sweep mop polish scrub",
    "house_part": "window door floor wall ceiling roof carpet fence",
    "opening": "window door",
    "tool": "hammer screwdriver drill saw ladder brush shovel",
    "fix_verb": "fix repair paint replace check",
    "pest": "mouse spider bee ant bird wasp",
    # --- news --------------------------------------------------------------------------
    "official": """
        president minister mayor governor senator ambassador chairman spokesman
        secretary director chancellor
    """,
    "institution": """
        government parliament council committee court company union police army
        ministry
    """,
    "news_event": "election strike protest agreement debate summit scandal budget",
    "news_verb": "announced approved rejected delayed criticized proposed signed launched",
    "news_topic": """
        taxes education housing transport energy healthcare pensions trade crime farming
        tourism
    """,
    "econ": "prices profits sales wages rents exports imports shares costs",
    "change_verb": "rose fell increased decreased climbed dropped jumped doubled",
    # --- nature ------------------------------------------------------------------------
    "animal": """
        dog cat horse cow sheep/sheep pig goat rabbit mouse/mice fox wolf/wolves
        deer/deer bear lion tiger elephant monkey owl eagle duck frog snake whale
        dolphin squirrel
    """,
    "plant": "tree flower rose tulip oak pine bush",
    "nature_place": "forest river lake beach meadow field valley mountain island cave",
    "animal_verb": "sleeping hiding hunting swimming eating resting",
    "animal_food": "grass seeds insects worms berries nuts leaves fish",
    "ability": "swim run climb fly jump dig hunt",
    # --- school and arts ---------------------------------------------------------------
    "subject": """
        history geography mathematics science music art english french spanish german
        literature
    """,
    "school_work": "exam essay test project report assignment quiz/quizzes",
    "instrument": "piano guitar violin drum flute trumpet cello",
    "artwork": "painting song poem novel film play opera symphony sculpture",
    "art_adj": "beautiful moving boring funny sad long short famous popular",
    "genre": "jazz classical rock folk pop country blues",
}
